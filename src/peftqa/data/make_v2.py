"""A SQuAD 2.0-format file made from a SQuAD v1.1 file: `peftqa data make-v2 SOURCE OUT`.

No SQuAD 2.0 copy is at hand offline, so the tests and the SQuAD 2.0 figures
(docs/results/2026-12-01-own-data.md) use this: a seeded share of the questions is moved to a
paragraph of a *different article*, where it has no answer (`is_impossible: true`, `answers: []`,
`plausible_answers: []`); the others keep their answers (`is_impossible: false`). Such questions are
far easier to refuse than SQuAD 2.0's, which were written against their own paragraph to look
answerable: the file tests the machinery (training at [CLS], the null threshold, the 2.0 scores),
not state-of-the-art abstention.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

from peftqa.data.squad import parse_squad_document, read_json_document
from peftqa.errors import PeftqaError
from peftqa.files import write_bytes_atomic

DEFAULT_SHARE = 1 / 3  # SQuAD 2.0 dev is about half unanswerable, its train a third
DEFAULT_SEED = 0


def make_squad2(
    source: str | os.PathLike, out: str | os.PathLike, share: float = DEFAULT_SHARE, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Write the SQuAD 2.0-format version of the v1.1 file `source` to `out` (gzipped when it ends in .gz).

    Returns counts: questions, unanswerable, articles. The same source, share and seed give the same
    bytes. Nothing is written when the source is not a valid v1.1 file or has a single article.
    """
    if not 0 < share < 1:
        raise PeftqaError(f"--share must be between 0 and 1, got {share}")
    source, out = Path(source), Path(out)
    document = read_json_document(source)
    examples = parse_squad_document(document, source)  # every field checked before anything is moved
    if any(not e.answers for e in examples):
        raise PeftqaError(f"{source}: already has questions without an answer; make-v2 takes a SQuAD v1.1 file")
    assert isinstance(document, dict)  # parse_squad_document checked it
    articles = document["data"]
    if len(articles) < 2:
        raise PeftqaError(f"{source}: has one article; moving a question to a different article needs two")
    rng = random.Random(seed)
    places = [(a, p, q) for a, article in enumerate(articles) for p, paragraph in enumerate(article["paragraphs"])
              for q in range(len(paragraph["qas"]))]  # fmt: skip
    moved = set(rng.sample(range(len(places)), round(share * len(places))))
    new_articles = [
        {**article, "paragraphs": [{"context": p["context"], "qas": []} for p in article["paragraphs"]]}
        for article in articles
    ]
    moves = []
    for index, (a, p, q) in enumerate(places):
        qa = articles[a]["paragraphs"][p]["qas"][q]
        if index not in moved:
            new_articles[a]["paragraphs"][p]["qas"].append({**qa, "is_impossible": False})
            continue
        other = rng.randrange(len(articles) - 1)
        other += other >= a  # any article but its own
        paragraph = rng.randrange(len(articles[other]["paragraphs"]))
        unanswerable = {
            "id": qa["id"],
            "question": qa["question"],
            "answers": [],
            "is_impossible": True,
            "plausible_answers": [],
        }
        moves.append((other, paragraph, unanswerable))
    # Moved questions follow the paragraph's own, in the source's order.
    for other, paragraph, unanswerable in moves:
        new_articles[other]["paragraphs"][paragraph]["qas"].append(unanswerable)
    made = {
        "version": "v2.0",
        "source": f"made from {source.name} by peftqa data make-v2 (share {share:g}, seed {seed})",
        "data": new_articles,
    }
    content = json.dumps(made, ensure_ascii=False).encode()
    write_bytes_atomic(out, gzip.compress(content, mtime=0) if out.name.endswith(".gz") else content)
    return {"questions": len(places), "unanswerable": len(moved), "articles": len(articles)}
