"""`peftqa data make-v2`: a SQuAD 2.0-format file made from a v1.1 file, seeded and checked."""

from __future__ import annotations

import json

import pytest

from peftqa.data import load_squad, make_squad2
from peftqa.errors import PeftqaError
from tests.squad_fixtures import many_articles, write_squad


def test_a_seeded_share_moves_to_another_article_without_an_answer(tmp_path):
    source = write_squad(tmp_path / "v1", train=many_articles(12)) / "train-v1.1.json"
    counts = make_squad2(source, tmp_path / "v2.json.gz", share=1 / 3, seed=0)
    original = {e.id: e for e in load_squad(source)}
    made = load_squad(tmp_path / "v2.json.gz")
    assert counts == {"questions": 30, "unanswerable": 10, "articles": 12}
    assert sorted(e.id for e in made) == sorted(original)
    moved = [e for e in made if not e.answers]
    assert len(moved) == 10
    for example in moved:
        before = original[example.id]
        assert example.question == before.question and example.title != before.title
        assert example.context != before.context
    kept = [e for e in made if e.answers]
    assert all(e == original[e.id] for e in kept)
    # The same seed gives the same bytes; another seed moves other questions.
    make_squad2(source, tmp_path / "again.json.gz", seed=0)
    assert (tmp_path / "again.json.gz").read_bytes() == (tmp_path / "v2.json.gz").read_bytes()
    make_squad2(source, tmp_path / "other.json", seed=1)
    assert {e.id for e in load_squad(tmp_path / "other.json") if not e.answers} != {e.id for e in moved}
    document = json.loads((tmp_path / "other.json").read_text())
    assert document["version"] == "v2.0" and "make-v2" in document["source"]
    qas = [qa for article in document["data"] for p in article["paragraphs"] for qa in p["qas"]]
    assert all(qa["plausible_answers"] == [] for qa in qas if qa["is_impossible"])


def test_make_v2_refuses_what_it_cannot_use_and_writes_nothing(tmp_path):
    one_article = write_squad(tmp_path / "one", train=many_articles(1)) / "train-v1.1.json"
    with pytest.raises(PeftqaError, match="has one article"):
        make_squad2(one_article, tmp_path / "out.json")
    with pytest.raises(PeftqaError, match="--share must be between 0 and 1"):
        make_squad2(one_article, tmp_path / "out.json", share=1.5)
    made = tmp_path / "v2.json"
    make_squad2(write_squad(tmp_path / "v1") / "dev-v1.1.json", made)
    with pytest.raises(PeftqaError, match="already has questions without an answer"):
        make_squad2(made, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
