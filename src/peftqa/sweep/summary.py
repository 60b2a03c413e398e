"""A sweep's study -> `sweep.json` and `sweep.png` (every trial, the best by F1, warnings for a best
value on the grid's edge), and reading them back: `--lr from:SWEEP_DIR` is the best trial's learning rate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.sweep.storage import STUDY_DB
from peftqa.sweep.sweep_config import _TRIAL_EVAL_SPLIT, SweepConfig, _point, search_space

if TYPE_CHECKING:
    import optuna

SWEEP_JSON = "sweep.json"
SWEEP_PNG = "sweep.png"
LR_FROM_PREFIX = "from:"


def _trial_row(trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "f1": trial.value,
        "f1_ci": trial.user_attrs.get("f1_ci"),  # 95% bootstrap interval over the held-out questions
        "exact_match": trial.user_attrs.get("exact_match"),
        "eval_loss": trial.user_attrs.get("eval_loss"),
        "train_seconds": trial.user_attrs.get("train_seconds"),
        "trainable_params": trial.user_attrs.get("trainable_params"),
        "run_dir": trial.user_attrs.get("run_dir"),
        "worker": trial.user_attrs.get("worker"),  # host:pid
        "duplicate_of": trial.user_attrs.get("duplicate_of"),  # gave way to this earlier trial of its point
        "epoch_f1": {str(epoch): f1 for epoch, f1 in trial.intermediate_values.items()},
    }


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest F1 among complete trials, EM breaking ties, then the smaller parameters: with several
    workers trials finish in any order, and the choice must not depend on it."""
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["f1"] is not None]
    ranked = sorted(complete, key=lambda r: _point(r["params"]))
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


def summarize(study: optuna.Study, config: SweepConfig, questions: int) -> dict[str, Any]:
    rows = sorted((_trial_row(t) for t in study.get_trials(deepcopy=False)), key=lambda r: r["number"])
    best = pick_best(rows)
    space = search_space(config)
    return {
        "method": config.base.method,
        "model": config.base.model,
        "sampler": config.sampler,
        "search_space": space,
        "train_questions": questions,
        "epochs": config.epochs,
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
        **config.extra,
    }


def write_sweep(folder: Path, summary: dict[str, Any]) -> None:
    from peftqa.plots import plot_sweep

    # Workers on several machines may finish at once on one shared folder: each atomic write has its
    # own temporary name, and the last summary written holds every trial.
    files.write_json_atomic(folder / SWEEP_JSON, summary)
    plot_sweep(summary, folder / SWEEP_PNG)


def read_sweep(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SWEEP_JSON
    if not path.is_file():
        raise PeftqaError(f"{folder}: no {SWEEP_JSON} (not a sweep directory, or the sweep has not finished)")
    return files.read_json(path)


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
