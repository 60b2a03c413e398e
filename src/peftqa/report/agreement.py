"""The error analysis's pairs of runs: how often two runs give the same answer, which of them is right,
and example questions where one is right and the other wrong.

Up to `EVERY_PAIR_UP_TO` runs, every pair is shown; past that the pairs grow with the square of the runs
(27 methods: 351 pairs, a hundred pages of examples), so each run is paired with the reference the
paired comparisons use (full fine-tuning, else the best run by F1).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from peftqa.data import Example
from peftqa.report.pairing import reference_run
from peftqa.report.render import Block
from peftqa.report.results import RunResult, _all_examples, shared_ids
from peftqa.scoring.metrics import normalize_answer

EVERY_PAIR_UP_TO = 6  # runs; more are each paired with the reference only
_DISAGREEMENT_EXAMPLES = 3  # per pair of runs and direction
DISAGREEMENT_HEADERS = ["question", "gold", "right", "wrong"]  # the columns of `disagreements`' rows


def _distinct_questions(ids: Sequence[str], by_id: dict[str, Example]) -> list[str]:
    """`ids` without repeats of a question text (SQuAD dev asks some questions twice, under two ids)."""
    first_id_of: dict[str, str] = {}
    for i in ids:
        first_id_of.setdefault(by_id[i].question, i)
    return list(first_id_of.values())


def disagreements(right: RunResult, wrong: RunResult, limit: int = _DISAGREEMENT_EXAMPLES) -> list[list[str]]:
    """Up to `limit` questions both runs were scored on where `right` is right (exact match) and `wrong` is
    wrong (F1 below 50), each question text once: rows of question, gold answers, each run's answer."""
    by_id = _all_examples([right, wrong])
    wins = [i for i in shared_ids(right, wrong) if right.scores[i]["exact_match"] == 100 and wrong.scores[i]["f1"] < 50]
    return [
        [
            by_id[i].question,
            " / ".join(dict.fromkeys(by_id[i].answers)) or "(no answer)",
            f"{right.name}: {right.predictions[i] or '(no answer)'}",
            f"{wrong.name}: {wrong.predictions.get(i, '') or '(no answer)'}",
        ]
        for i in _distinct_questions(wins, by_id)[:limit]
    ]


def compared_pairs(results: Sequence[RunResult]) -> tuple[list[tuple[int, int]], str]:
    """Which runs (indices into `results`) are paired, and a sentence saying so."""
    if len(results) <= EVERY_PAIR_UP_TO:
        return list(itertools.combinations(range(len(results)), 2)), "Each pair of runs"
    reference, what = reference_run(results)
    k = next(i for i, r in enumerate(results) if r is reference)
    pairs = [(k, i) for i in range(len(results)) if i != k]
    return pairs, f"With {len(results)} runs, each run against {reference.name} ({what}), as in the paired comparisons"


def agreement_blocks(results: Sequence[RunResult], scores: Sequence[dict[str, dict[str, Any]]]) -> list[Block]:
    """The agreement table and the right-and-wrong examples of the compared pairs (none for one run)."""
    if len(results) < 2:
        return []
    pairs, which = compared_pairs(results)
    rows, examples = [], []
    for ia, ib in pairs:
        (a, sa), (b, sb) = (results[ia], scores[ia]), (results[ib], scores[ib])
        ids = shared_ids(a, b)
        same = sum(
            normalize_answer(a.predictions.get(i, "")) == normalize_answer(b.predictions.get(i, "")) for i in ids
        )
        right = [(sa[i]["exact_match"] == 100, sb[i]["exact_match"] == 100) for i in ids]
        n = max(len(ids), 1)
        rows.append(
            [
                a.name,
                b.name,
                len(ids),
                f"{100 * same / n:.1f}%",
                *[f"{100 * right.count(case) / n:.1f}%" for case in ((True, True), (True, False), (False, True))],
            ]
        )
        examples += disagreements(a, b) + disagreements(b, a)
    return [
        Block("h3", "Agreement between runs"),
        Block(
            "p",
            f"Same answer: identical after SQuAD normalisation. Right: exact match with a gold answer. {which}.",
        ),
        Block(
            "table",
            headers=["run A", "run B", "questions", "same answer", "both right", "only A right", "only B right"],
            rows=rows,
        ),
        Block("h3", "Where one run is right and another wrong"),
        Block(
            "p",
            f"Right: exact match; wrong: F1 below 50. {which}, on the questions both were scored on, the same "
            "questions as its paired comparison.",
        ),
        Block("table", headers=DISAGREEMENT_HEADERS, rows=examples),
    ]
