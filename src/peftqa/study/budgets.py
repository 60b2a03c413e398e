"""`peftqa study --budgets 250,1000,4000`: the study once per training budget (questions), every method
swept at each budget (its rate chosen there), every final run scored on the same dev questions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.settings.run_config import RunConfig


def parse_budgets(text: str | None) -> list[int]:
    """`250,1000,4000` -> [250, 1000, 4000] (sorted, each once); None -> [] (the preset's one budget)."""
    if text is None:
        return []
    try:
        budgets = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise PeftqaError(f"--budgets expects comma-separated whole numbers of questions, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise PeftqaError(f"--budgets expects positive numbers of training questions, got {text!r}")
    return budgets


def fitting_budgets(budgets: list[int], base: RunConfig, log: Callable[[str], None]) -> list[int]:
    """The budgets the training data can hold: its questions less the held-out articles every run keeps
    out of training; the larger ones are dropped with a note."""
    from peftqa.data import train_questions

    choice = dataclasses.replace(base.questions, hold_out=True, train_limit=None)
    available = len(train_questions(base.data.data_dir, choice))
    kept = [budget for budget in budgets if budget <= available]
    dropped = [budget for budget in budgets if budget > available]
    if dropped:
        log(
            f"note: budget(s) {', '.join(f'{b:,}' for b in dropped)} dropped: the training data holds {available:,} "
            f"questions besides the {base.data.validation_questions:,}+ held out"
        )
    if not kept:
        raise PeftqaError(
            f"--budgets: no budget fits: the training data holds {available:,} questions besides the held-out ones"
        )
    return kept


def budget_suffix(budget: int | None) -> str:
    """'-q1000': what a budget adds to its sweep and run folder names ('' for the preset's own)."""
    return "" if budget is None else f"-q{budget}"


def budget_record(budgets: list[int], names: list[str], learning_rates: dict[str, float]) -> dict[str, Any]:
    """What study.json says of the budgets: which, and how each budget's rate was chosen."""
    return {
        "budgets": budgets,
        "rate_choice": "a sweep per method at each budget: trials trained on that budget's questions",
        "learning_rates": {name: {b: learning_rates[f"{name}{budget_suffix(b)}"] for b in budgets} for name in names},
    }
