"""report/agreement: the error analysis's pairs of runs, every pair for a few runs, each run against the
reference for many."""

from __future__ import annotations

from peftqa.report import load_results, render_markdown
from peftqa.report.agreement import EVERY_PAIR_UP_TO, agreement_blocks, compared_pairs, disagreements
from peftqa.report.results import per_question_scores
from tests.helpers import fake_run
from tests.squad_fixtures import many_articles, write_squad


def test_disagreement_examples_show_a_question_asked_twice_once(tmp_path):
    articles = many_articles(3)  # 1, 2 and 3 questions: 6 in all
    twice = articles[1]["paragraphs"][0]["qas"]
    twice[1]["question"] = twice[0]["question"]  # SQuAD dev asks some questions twice, under two ids
    data_dir = write_squad(tmp_path / "squad", dev=articles)
    right = fake_run(tmp_path / "right", data_dir, "full", [True] * 6)
    wrong = fake_run(tmp_path / "wrong", data_dir, "lora", [False] * 6)
    rows = disagreements(*load_results([right, wrong]), limit=10)
    questions = [row[0] for row in rows]
    assert len(questions) == 5 and len(set(questions)) == 5 and twice[0]["question"] in questions


def _runs(count, many_dir, tmp_path):
    """`count` runs, one of them full fine-tuning; run k is right on the questions k..k+19."""
    methods = ["full", "lora", "ia3", "bitfit", "dora", "vera", "loha", "lokr", "oft"][:count]
    folders = [
        fake_run(tmp_path / name, many_dir, name, [k <= q < k + 20 for q in range(30)])
        for k, name in enumerate(methods)
    ]
    return load_results(folders)


def test_a_few_runs_are_paired_every_way(many_dir, tmp_path):
    results = _runs(3, many_dir, tmp_path)
    pairs, which = compared_pairs(results)
    assert pairs == [(0, 1), (0, 2), (1, 2)] and which == "Each pair of runs"


def test_many_runs_are_each_paired_with_full_fine_tuning_only(many_dir, tmp_path):
    results = _runs(EVERY_PAIR_UP_TO + 2, many_dir, tmp_path)
    full = next(i for i, r in enumerate(results) if r.method == "full")
    pairs, which = compared_pairs(results)
    assert sorted(pairs) == sorted((full, i) for i in range(len(results)) if i != full)
    assert which.startswith(f"With {len(results)} runs, each run against full (full fine-tuning)")

    blocks = agreement_blocks(results, [per_question_scores(r) for r in results])
    table = next(b for b in blocks if b.kind == "table")
    assert len(table.rows) == len(results) - 1 and all("full" in row[:2] for row in table.rows)
    assert which in render_markdown(blocks, tmp_path / "figures")
