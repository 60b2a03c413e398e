"""The report across training budgets (`peftqa study --budgets`): each method's dev F1 against the
number of training questions, with intervals, in a table and one figure; the Findings say where the
order of the methods changes (report.findings.budget_finding)."""

from __future__ import annotations

from collections.abc import Sequence

from peftqa.report.pairing import MethodGroup, group_runs
from peftqa.report.render import Block
from peftqa.report.results import RunResult, _interval


def budget_of(result: RunResult) -> int:
    """The training budget a run was given (its question limit), else the questions it trained on."""
    return int(result.config.get("train_limit") or result.settings.get("train_questions") or 0)


def budget_groups(results: Sequence[RunResult]) -> dict[int, list[MethodGroup]]:
    """budget -> the methods run at it (seeds of one setting together), best mean F1 first."""
    budgets = sorted({budget_of(r) for r in results})
    return {
        budget: sorted(group_runs([r for r in results if budget_of(r) == budget]), key=lambda g: -g.mean("f1"))
        for budget in budgets
    }


def _rate(group: MethodGroup) -> str:
    rates = sorted({float(r.settings.get("learning_rate", 0)) for r in group.runs})
    return ", ".join(f"{rate:g}" for rate in rates)


def budget_blocks(results: Sequence[RunResult]) -> list[Block]:
    """The section: a table (method x budget: F1 [95% CI] and the rate chosen) and F1 against budget."""
    from peftqa.plots import budgets_png

    by_budget = budget_groups(results)
    if len(by_budget) < 2:
        return []
    labels = list(dict.fromkeys(g.label for groups in by_budget.values() for g in groups))
    cell = {(budget, g.label): g for budget, groups in by_budget.items() for g in groups}
    rows = [[label, *(_cell(cell.get((budget, label))) for budget in by_budget)] for label in labels]
    series = {
        label: [
            (budget, group.mean("f1"), _bounds(group))
            for budget in by_budget
            if (group := cell.get((budget, label))) is not None
        ]
        for label in labels
    }
    scored_on = "; ".join(dict.fromkeys(r.scored_on for r in results))
    note = (
        "Dev F1 [95% bootstrap interval] by training budget (questions), and the learning rate used. Each budget's "
        "rate was chosen by its own sweep per method (trials trained on that budget's questions and judged on "
        f"held-out training articles, never dev); every run is scored on the same dev questions: {scored_on}. "
        "Every budget trains for the preset's epochs, so a smaller budget is also fewer optimiser steps."
    )
    return [
        Block("h2", "Results across training budgets"),
        Block("p", note),
        Block("table", headers=["method", *(f"{b:,} questions" for b in by_budget)], rows=rows),
        Block("figure", "dev F1 against training questions (log scale), 95% intervals", png=budgets_png(series),
              name="budgets.png"),
    ]  # fmt: skip


def _bounds(group: MethodGroup) -> tuple[float, float]:
    """The interval of a group's F1 (its seeds' mean per question), as plotted."""
    return _interval(group.values("f1"))


def _cell(group: MethodGroup | None) -> str:
    return "" if group is None else f"{group.formatted('f1')} (lr {_rate(group)})"
