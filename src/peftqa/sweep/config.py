"""What a sweep searches: its settings (SweepConfig), the grid they span, and the run each grid point
becomes (`trial_config`, in a folder named by the point's parameters)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa.config import RunConfig
from peftqa.data import load_squad, split_path
from peftqa.errors import PeftqaError
from peftqa.methods import get_method

# What every trial is scored on: training articles held out from the trials' training (data.QuestionChoice).
_TRIAL_EVAL_SPLIT = "validation"


@dataclass
class SweepConfig:
    """What a sweep searches and how; `base` holds every other run setting."""

    base: RunConfig  # model, data, lengths, batch size, seed, method and its fixed options
    lrs: list[float] | None = None  # learning rates to try; None: the method's default grid (MethodSpec.sweep_lrs)
    ranks: list[int] | None = None  # values of the method's rank option (MethodSpec.rank_option); None: keep it fixed
    train_fraction: float = 0.1  # share of the training questions (seeded random sample)
    train_limit: int | None = None  # or an exact number of questions (overrides train_fraction)
    epochs: float = 1.0  # epochs per trial
    eval_limit: int | None = 1000  # held-out training questions each trial is scored on
    sampler: str = "grid"  # "grid": every combination; "tpe": n_trials draws from the ranges
    n_trials: int | None = None  # TPE only: how many trials in total
    storage: str | None = None  # Optuna storage URL; None: sqlite file in output_dir
    workers: int | None = None  # worker processes on this machine; None: 1 (or workers_per_gpu x GPUs)
    workers_per_gpu: int | None = None  # workers sharing each GPU (peftqa.workers.plan_slots)
    prune: bool = True  # MedianPruner between epochs (needs epochs >= 2)
    extend_edges: int = 0  # grid only: times a best lr on the grid's edge adds a point beyond it
    output_dir: str | None = None  # None: sweeps/<method>-<model>
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored in sweep.json

    def __post_init__(self) -> None:
        problems = []
        if self.lrs is not None and (not self.lrs or min(self.lrs) <= 0):
            problems.append("learning rates must be positive numbers")
        if self.ranks is not None and (not self.ranks or min(self.ranks) <= 0):
            problems.append("ranks must be positive integers")
        if self.ranks is not None and get_method(self.base.method).rank_option is None:
            problems.append(f"method '{self.base.method}' has no rank option; drop --ranks")
        if not 0 < self.train_fraction <= 1:
            problems.append(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.sampler not in ("grid", "tpe"):
            problems.append(f"sampler must be 'grid' or 'tpe', got {self.sampler!r}")
        if self.sampler == "tpe" and not self.n_trials:
            problems.append("--sampler tpe needs --n-trials")
        for name, value in (("--workers", self.workers), ("--workers-per-gpu", self.workers_per_gpu)):
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1, got {value}")
        if problems:
            raise PeftqaError("; ".join(problems))

    @property
    def learning_rates(self) -> list[float]:
        return sorted(self.lrs) if self.lrs else get_method(self.base.method).lr_grid()

    @property
    def folder(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        return Path("sweeps") / f"{self.base.method}-{Path(self.base.model).name or 'model'}"


def search_space(config: SweepConfig) -> dict[str, list]:
    space: dict[str, list] = {"lr": config.learning_rates}
    rank_option = get_method(config.base.method).rank_option
    if config.ranks and rank_option:
        space[rank_option] = sorted(config.ranks)
    return space


def _point(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def questions_per_trial(config: SweepConfig) -> int:
    """Training questions per trial: the exact limit, or the fraction of the training file's questions."""
    if config.train_limit:
        return config.train_limit
    total = len(load_squad(split_path(config.base.data_dir, "train")))
    return max(1, round(config.train_fraction * total))


def trial_dir(folder: Path, params: dict[str, Any]) -> Path:
    """Named by the parameters, so a re-run of an interrupted point resumes its checkpoint."""
    return folder / "trials" / "-".join(f"{name}{value:g}" for name, value in sorted(params.items()))


def trial_config(config: SweepConfig, params: dict[str, Any], questions: int) -> RunConfig:
    options = dict(config.base.method_options)
    options.update({k: v for k, v in params.items() if k != "lr"})
    return dataclasses.replace(
        config.base,
        lr=params["lr"],
        method_options=options,
        train_limit=questions,
        epochs=config.epochs,
        # Trials are scored on training articles held out from every trial's training, never on dev:
        # a learning rate chosen on dev questions would flatter the dev figures reported later.
        eval_split=_TRIAL_EVAL_SPLIT,
        eval_limit=config.eval_limit,
        max_steps=None,
        output_dir=str(trial_dir(config.folder, params)),
    )
