"""A sweep's study -> `sweep.json` and `sweep.png` (every trial, the best by F1, warnings for a best
value on the grid's edge), and reading them back: `--lr from:SWEEP_DIR` is the best trial's learning rate."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference.run_files import (
    Check,
    check_fields,
    is_count,
    is_interval,
    is_loss,
    is_number,
    is_text,
    is_whole,
    list_of,
    mapping_of,
    optional,
    record,
)
from peftqa.sweep.rungs import read_evaluations, separation
from peftqa.sweep.storage import STUDY_DB
from peftqa.sweep.sweep_config import _TRIAL_EVAL_SPLIT, Rungs, SweepConfig, grid_point, search_space

if TYPE_CHECKING:
    import optuna

SWEEP_JSON = "sweep.json"
SWEEP_PNG = "sweep.png"
LR_FROM_PREFIX = "from:"


def _trial_row(trial) -> dict[str, Any]:
    attrs = trial.user_attrs
    # A finished trial's own count; a pruned one stopped at its last evaluation.
    steps = attrs.get("steps", trial.last_step if trial.state.name == "PRUNED" else None)
    held_out = read_evaluations(attrs.get("run_dir"))
    if trial.state.name == "PRUNED" and steps in held_out:
        exact_match, f1_ci = held_out[steps]["exact_match"], held_out[steps]["f1_ci"]
    else:
        exact_match, f1_ci = attrs.get("exact_match"), attrs.get("f1_ci")
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "f1": trial.value,  # held-out F1: of the weights kept, or where a pruned trial stopped
        "f1_ci": f1_ci,  # 95% bootstrap interval over the held-out questions
        "exact_match": exact_match,
        "eval_loss": attrs.get("eval_loss"),
        "steps": steps,
        "kept_step": attrs.get("kept_step"),
        "train_seconds": attrs.get("train_seconds"),
        "dev_f1": attrs.get("dev_f1"),  # a trial that is a final run (score_dev): its dev F1, never chosen on
        "trainable_params": attrs.get("trainable_params"),
        "run_dir": attrs.get("run_dir"),
        "worker": attrs.get("worker"),  # host:pid
        "duplicate_of": attrs.get("duplicate_of"),  # gave way to this earlier trial of its point
        "held_out_f1": {str(step): f1 for step, f1 in sorted(trial.intermediate_values.items())},
    }


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest F1 among complete trials, EM breaking ties, then the smaller parameters: with several
    workers trials finish in any order, and the choice must not depend on it."""
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["f1"] is not None]
    ranked = sorted(complete, key=lambda r: grid_point(r["params"]))
    return max(ranked, key=lambda r: (r["f1"], r["exact_match"] or 0.0), default=None)


def edge_warnings(best: dict[str, Any] | None, space: dict[str, list]) -> list[str]:
    """A best value on the edge of its grid means the optimum may lie outside: say which way to extend."""
    if best is None:
        return []
    warnings = []
    for name, values in space.items():
        if len(values) < 2:
            continue
        value = best["params"].get(name)
        if value is not None and math.isclose(value, min(values)):
            warnings.append(f"best {name}={value:g} is the lowest value tried: extend the grid downward")
        elif value is not None and math.isclose(value, max(values)):
            warnings.append(f"best {name}={value:g} is the highest value tried: extend the grid upward")
    return warnings


def summarize(study: optuna.Study, config: SweepConfig, questions: int, rungs: Rungs) -> dict[str, Any]:
    space = search_space(config)
    grid = {grid_point(dict(zip(space, values, strict=True))) for values in itertools.product(*space.values())}
    trials = study.get_trials(deepcopy=False)
    # The study outlives a changed grid (storage._study_name); the summary is the grid's.
    rows = sorted(
        (_trial_row(t) for t in trials if config.sampler != "grid" or not t.params or grid_point(t.params) in grid),
        key=lambda r: r["number"],
    )
    best = pick_best(rows)
    return {
        "method": config.base.method,
        "model": config.base.model,
        "sampler": config.sampler,
        "search_space": space,
        "train_questions": questions,
        "epochs": config.epochs,
        "steps": rungs.total,  # a trial's steps when it is not pruned
        "rungs": rungs.steps(),
        "pruner": f"successive halving, factor {rungs.factor}" if config.prune else None,
        "score_dev": config.score_dev,
        # What the sweep cost: every trial's steps and training seconds, pruned ones to where they stopped.
        "compute": {
            "steps": sum(r["steps"] or 0 for r in rows),
            "train_seconds": round(sum(r["train_seconds"] or 0.0 for r in rows), 1),
            "trials": {state: sum(r["state"] == state for r in rows) for state in ("COMPLETE", "PRUNED", "FAIL")},
        },
        "eval_limit": config.eval_limit,
        "eval_split": _TRIAL_EVAL_SPLIT,  # held-out training articles (RunConfig.validation_questions of them)
        "validation_questions": config.base.data.validation_questions,
        "seed": config.base.optimisation.seed,
        "storage": config.storage or STUDY_DB,
        "study_name": study.study_name,
        "base_config": config.base.to_dict(),
        "trials": rows,
        "best": best,
        # What the original study chose by (lowest loss on the scored questions), kept so the two rules can be compared.
        "best_by_eval_loss": min(
            (r for r in rows if r["state"] == "COMPLETE" and r["eval_loss"] is not None),
            key=lambda r: r["eval_loss"],
            default=None,
        ),
        "edge_warnings": edge_warnings(best, space) if config.sampler == "grid" else [],
        "separation": separation(best, rows),
        **config.extra,
    }


def write_sweep(folder: Path, summary: dict[str, Any]) -> None:
    from peftqa.plots import plot_sweep

    # Workers on several machines may finish at once on one shared folder: each atomic write has its
    # own temporary name, and the last summary written holds every trial.
    files.write_json_atomic(folder / SWEEP_JSON, files.finite(summary))  # a diverged trial's figures: null
    plot_sweep(summary, folder / SWEEP_PNG)


_PARAMS = mapping_of(is_number)
_TRIAL = {"number": is_count, "state": is_text, "params": _PARAMS}
_TRIAL_FIGURES = {
    "f1": optional(is_number),
    "exact_match": optional(is_number),
    "eval_loss": is_loss,
    "f1_ci": optional(is_interval),
    "steps": optional(is_count),
    "kept_step": optional(is_count),
    "run_dir": optional(is_text),
}
_CHOSEN = optional(record({**_TRIAL, "f1": is_number, "params": record({"lr": is_number})}, _TRIAL_FIGURES))
_SEPARATION = record(
    {"next": _PARAMS, "next_state": is_text, "steps": list_of(optional(is_count)), "questions": is_count},
    {"difference": is_number, "low": is_number, "high": is_number, "settled": lambda value: isinstance(value, bool)},
)
# What the report, the findings, the study and `--lr from:` read of sweep.json, checked when it is read.
SWEEP_REQUIRED: dict[str, tuple[Check, str]] = {
    "method": (is_text, "a string"),
    "trials": (list_of(record(_TRIAL, _TRIAL_FIGURES)), "a list of trials"),
}
SWEEP_OPTIONAL: dict[str, tuple[Check, str]] = {
    "best": (_CHOSEN, "a trial with its params (lr among them) and F1, or null"),
    "best_by_eval_loss": (_CHOSEN, "a trial with its params (lr among them) and F1, or null"),
    "edge_warnings": (list_of(is_text), "a list of strings"),
    "search_space": (mapping_of(list_of(is_number)), "an object of value lists"),
    "base_config": (record({"eval_sample": is_text, "eval_seed": is_whole}), "an object with eval_sample, eval_seed"),
    "eval_split": (is_text, "a string"),
    "eval_limit": (optional(is_count), "a whole number or null"),
    "validation_questions": (is_count, "a whole number"),
    "train_questions": (is_count, "a whole number"),
    "epochs": (is_number, "a number"),
    "steps": (is_count, "a whole number"),
    "score_dev": (lambda value: isinstance(value, bool), "true or false"),
    "compute": (record({"steps": is_count, "train_seconds": is_number}), "an object with steps and train_seconds"),
    "separation": (optional(_SEPARATION), "a paired comparison or null"),
}


def read_sweep(folder: str | Path) -> dict[str, Any]:
    """A finished sweep's sweep.json, checked: every field the report and `--lr from:` read has its type."""
    path = Path(folder) / SWEEP_JSON
    if not path.is_file():
        raise PeftqaError(f"{folder}: no {SWEEP_JSON} (not a sweep directory, or the sweep has not finished)")
    return check_fields(files.read_json(path), path, SWEEP_REQUIRED, SWEEP_OPTIONAL, "a peftqa sweep.json")


def best_lr(folder: str | Path) -> float:
    """The learning rate of a finished sweep's best trial."""
    best = read_sweep(folder).get("best")
    if not best:
        raise PeftqaError(f"{folder}: the sweep has no complete trial yet")
    return float(best["params"]["lr"])


def resolve_lr(text: str | float | None) -> float | None:
    """`--lr 3e-4` -> 3e-4; `--lr from:SWEEP_DIR` -> the best learning rate of that sweep."""
    if text is None or isinstance(text, float | int):
        return text
    if text.startswith(LR_FROM_PREFIX):
        return best_lr(text.removeprefix(LR_FROM_PREFIX))
    try:
        return float(text)
    except ValueError:
        raise PeftqaError(f"--lr expects a number or from:SWEEP_DIR, got {text!r}") from None
