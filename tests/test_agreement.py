"""report/agreement: the error analysis's pairs of runs, every pair for a few runs, each run against the
reference for many."""

from __future__ import annotations

from peftqa.data import Example
from peftqa.report import load_results, render_markdown
from peftqa.report.agreement import EVERY_PAIR_UP_TO, _distinct_questions, agreement_blocks, compared_pairs
from peftqa.report.results import per_question_scores
from tests.helpers import fake_run


def test_disagreement_examples_show_a_question_asked_twice_once():
    by_id = {
        "a": Example("a", "Where?", "ctx", ("x",), (0,)),
        "b": Example("b", "Where?", "ctx", ("x",), (0,)),
        "c": Example("c", "Who?", "ctx", ("x",), (0,)),
    }
    assert _distinct_questions(["a", "b", "c"], by_id) == ["a", "c"]


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
