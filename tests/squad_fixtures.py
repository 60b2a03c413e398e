"""Small SQuAD-format data the tests write themselves (hand-made, so every case is known)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

ARTICLES = [
    {
        "title": "Austen",
        "paragraphs": [
            {
                "context": "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton.",
                "qas": [
                    {
                        "id": "q-author",
                        "question": "Who wrote Pride and Prejudice?",
                        "answers": [{"text": "Jane Austen", "answer_start": 35}],
                    },
                    {
                        "id": "q-year",
                        "question": "When was it published?",
                        "answers": [{"text": "1813", "answer_start": 64}, {"text": "in 1813", "answer_start": 61}],
                    },
                    {
                        "id": "q-publisher",
                        "question": "Who published the novel?",
                        "answers": [{"text": "Thomas Egerton", "answer_start": 72}],
                    },
                ],
            }
        ],
    },
    {
        "title": "Café",
        "paragraphs": [
            {
                "context": "The Café de Flore in Paris, opened around 1887, was a meeting place for Jean-Paul Sartre.",
                "qas": [
                    {
                        "id": "q-city",
                        "question": "In which city is the Café de Flore?",
                        "answers": [{"text": "Paris", "answer_start": 21}],
                    },
                    {
                        "id": "q-opened",
                        "question": "When did the café open?",
                        "answers": [{"text": "around 1887", "answer_start": 35}],
                    },
                    {
                        "id": "q-sartre",
                        "question": "Which philosopher met there?",
                        "answers": [{"text": "Jean-Paul Sartre", "answer_start": 72}],
                    },
                ],
            }
        ],
    },
]


def squad_document(articles=None) -> dict:
    """A SQuAD document of a deep copy of `articles` (default ARTICLES): a test that breaks its copy on
    purpose (a wrong answer_start) must not break the fixture for the tests that run after it."""
    return {"version": "1.1", "data": copy.deepcopy(articles if articles is not None else ARTICLES)}


def write_squad(folder: Path, train=None, dev=None, gz: bool = False) -> Path:
    """Write train-v1.1.json and dev-v1.1.json (the same tiny articles unless given) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, articles in (("train", train), ("dev", dev)):
        content = json.dumps(squad_document(articles)).encode()
        if gz:
            (folder / f"{split}-v1.1.json.gz").write_bytes(gzip.compress(content))
        else:
            (folder / f"{split}-v1.1.json").write_bytes(content)
    return folder


def many_articles(count: int = 12) -> list[dict]:
    """`count` generated articles with 1 to 4 questions each (article i has i % 4 + 1), for splits and samples."""
    articles = []
    for i in range(count):
        context = f"Article {i} is about the town of Town{i}, founded in year {1000 + i}."
        start = context.index(f"Town{i}")
        qas = [
            {
                "id": f"a{i}-q{j}",
                "question": f"Which town is article {i} about (variant {j})?",
                "answers": [{"text": f"Town{i}", "answer_start": start}],
            }
            for j in range(i % 4 + 1)
        ]
        articles.append({"title": f"Article {i}", "paragraphs": [{"context": context, "qas": qas}]})
    return articles


# SQuAD 2.0: the same articles, each with questions that its paragraph cannot answer.
V2_EXTRA = {
    "Austen": [("q-austen-none", "Who illustrated the first edition?"), ("q-austen-none2", "How many copies sold?")],
    "Café": [("q-cafe-none", "Who owns the café today?"), ("q-cafe-none2", "What does a coffee cost there?")],
}


def v2_articles(articles=None) -> list[dict]:
    """ARTICLES (or `articles`) in the SQuAD 2.0 layout: every question with `is_impossible`, and two
    questions per article without an answer (`answers: []`, `plausible_answers: []`)."""
    made = copy.deepcopy(articles if articles is not None else ARTICLES)
    for article in made:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa.setdefault("is_impossible", not qa["answers"])
        for question_id, question in V2_EXTRA.get(article["title"], []):
            article["paragraphs"][0]["qas"].append(
                {"id": question_id, "question": question, "answers": [], "is_impossible": True, "plausible_answers": []}
            )
    return made


def write_v2(path: Path, articles=None) -> Path:
    """A SQuAD 2.0-format file of v2_articles(articles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "v2.0", "data": v2_articles(articles)}))
    return path


def jsonl_rows(articles=None, answers: bool = True) -> list[dict]:
    """The questions of a SQuAD document as JSON Lines rows in the `datasets` layout (optionally without answers)."""
    rows = []
    for article in squad_document(articles)["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                row = {"id": qa["id"], "title": article["title"], "context": paragraph["context"]}
                row["question"] = qa["question"]
                if answers:
                    row["answers"] = {
                        "text": [a["text"] for a in qa["answers"]],
                        "answer_start": [a["answer_start"] for a in qa["answers"]],
                    }
                rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> Path:
    """Rows as a JSON Lines file, gzipped when asked (whatever the name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(content) if gz else content)
    return path
