"""The report on data with unanswerable questions (SQuAD 2.0): how each run splits its score between
questions that have an answer and questions that have none, with intervals and paired differences,
a Findings paragraph, and the two new kinds of error (answered a question that has no answer;
answered nothing where there is an answer). Runs on SQuAD v1.1 data add nothing here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from peftqa.report.pairing import reference_run
from peftqa.report.render import Block
from peftqa.report.results import RESAMPLES, RunResult, _interval
from peftqa.scoring.stats import BOOTSTRAP_SEED, format_interval, paired_difference

_EXAMPLES_PER_RUN = 3


def has_unanswerable(result: RunResult) -> bool:
    """Whether the run was scored on questions some of which have no answer (or trained to abstain)."""
    return "null_threshold" in result.metrics or any(not e.answers for e in result.examples)


def _ids(result: RunResult, answerable: bool) -> list[str]:
    return [e.id for e in result.examples if bool(e.answers) is answerable]


def _mean_with_interval(result: RunResult, metric: str, ids: list[str]) -> str:
    if not ids:
        return "n/a"
    values = result.values(metric, ids)
    return format_interval(float(values.mean()), *_interval(values))


def _wrongly_answered(result: RunResult) -> list[str]:
    """Questions without an answer that the run answered anyway."""
    return [i for i in _ids(result, False) if result.predictions.get(i, "")]


def _wrongly_refused(result: RunResult) -> list[str]:
    """Questions with an answer that the run answered nothing to."""
    return [i for i in _ids(result, True) if not result.predictions.get(i, "")]


def _threshold(result: RunResult) -> str:
    value = result.metrics.get("null_threshold")
    if value is None:
        return "none (always answers)"
    chosen = result.settings.get("null_threshold_chosen_on")
    return f"{value:.3f}" + (f" (chosen on {chosen})" if chosen else " (given)")


def _paired(a: RunResult, b: RunResult, metric: str, answerable: bool) -> str:
    ids = [i for i in _ids(a, answerable) if i in b.scores]
    if not ids:
        return "n/a"
    found = paired_difference(a.values(metric, ids), b.values(metric, ids), resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
    text = format_interval(found["difference"], found["low"], found["high"])
    return ("" if text.startswith("-") else "+") + text + (" (settled)" if found["settled"] else " (not settled)")


def answerability_section(results: Sequence[RunResult]) -> list[Block]:
    """Answerable and unanswerable questions apart: each run's figures, then paired differences."""
    runs = [r for r in results if has_unanswerable(r)]
    if not runs:
        return []
    rows = []
    for r in runs:
        has, none = _ids(r, True), _ids(r, False)
        best = r.metrics.get("best_f1")
        rows.append(
            [
                r.name,
                f"{len(has)} / {len(none)}",
                _mean_with_interval(r, "f1", has),
                _mean_with_interval(r, "exact_match", none),
                f"{len(_wrongly_answered(r))} of {len(none)}",
                f"{len(_wrongly_refused(r))} of {len(has)}",
                _threshold(r),
                "" if best is None else f"{best:.1f}",
            ]
        )
    blocks = [
        Block("h2", "Questions with and without an answer (SQuAD 2.0)"),
        Block(
            "p",
            "Scored as the official SQuAD 2.0 script scores them: a question without an answer scores 100 exactly "
            "when the run answers nothing. HasAns F1 is over the questions that have an answer, NoAns accuracy over "
            "those that have none, each with its 95% bootstrap interval. A run answers nothing where its null score "
            "beats its best span's by more than its threshold, chosen on held-out training questions, never on dev; "
            "best F1 is the F1 the best threshold on these very questions would give (the official best_f1), an "
            "upper bound, not a result.",
        ),
        Block(
            "table",
            headers=[
                "run",
                "with / without answer",
                "HasAns F1 [95% CI]",
                "NoAns accuracy [95% CI]",
                "answered a question that has no answer",
                "answered nothing where there is an answer",
                "null threshold",
                "best F1",
            ],
            rows=rows,
        ),
    ]
    if len(runs) > 1:
        reference, why = reference_run(runs)
        paired = [
            [r.name, _paired(r, reference, "f1", True), _paired(r, reference, "exact_match", False)]
            for r in runs
            if r is not reference
        ]
        blocks += [
            Block("p", f"Each run minus {reference.name} ({why}), paired on the questions both were scored on:"),
            Block("table", headers=["run", "HasAns F1 difference", "NoAns accuracy difference"], rows=paired),
        ]
    examples = []
    for r in runs:
        by_id = {e.id: e for e in r.examples}
        chosen = sorted(_wrongly_answered(r), key=lambda i: by_id[i].question)[:_EXAMPLES_PER_RUN]
        examples += [[r.name, by_id[i].question, r.predictions[i]] for i in chosen]
    if examples:
        blocks += [
            Block("h3", "Answered a question that has no answer"),
            Block("table", headers=["run", "question", "its answer"], rows=examples),
        ]
    return blocks


def answerability_finding(results: Sequence[RunResult]) -> str | None:
    """The Findings paragraph on abstention, or None when no run was scored on unanswerable questions."""
    runs = [r for r in results if has_unanswerable(r)]
    if not runs:
        return None
    parts = []
    for r in runs:
        none = _ids(r, False)
        refused = np.mean([not r.predictions.get(i, "") for i in none]) * 100 if none else float("nan")
        parts.append(
            f"{r.name} answers nothing on {refused:.0f}% of the {len(none)} questions that have no answer "
            f"(NoAns accuracy {_mean_with_interval(r, 'exact_match', none)}), HasAns F1 "
            f"{_mean_with_interval(r, 'f1', _ids(r, True))}, threshold {_threshold(r)}"
        )
    return (
        "On questions with and without an answer (SQuAD 2.0 scoring): "
        + "; ".join(parts)
        + ". The overall F1 mixes the two; a run that answers every question still scores on the answerable ones."
    )
