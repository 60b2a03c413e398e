"""What a sweep searches: its settings (SweepConfig), the grid they span, and the run each grid point
becomes (`trial_config`, in a folder named by the point's parameters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa.checks import COUNT, NOT_NEGATIVE, POSITIVE, Range, check_fields, flag
from peftqa.data import load_squad, question_source
from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.settings.fields import setting
from peftqa.settings.run_config import RunConfig

SAMPLERS = ("grid", "tpe")


# What every trial is scored on: training articles held out from the trials' training (data.QuestionChoice).
_TRIAL_EVAL_SPLIT = "validation"
# The run settings every trial gets from the sweep (trial_config), so `peftqa sweep` offers no run flag for
# them: the learning rate is searched, the scored split is fixed, and SweepConfig has its own trial size
# (train_limit, epochs, eval_limit) and folder.
SET_BY_THE_SWEEP = frozenset({"lr", "train_limit", "epochs", "eval_split", "eval_limit", "max_steps", "output_dir"})


@dataclass
class SweepConfig:
    """What a sweep searches and how; `base` holds every other run setting."""

    base: RunConfig  # model, data, lengths, batch size, seed, method and its fixed options
    lrs: list[float] | None = setting(
        None, "learning rates to try, e.g. 1e-4,3e-4,1e-3 (default: the method's grid)", within=POSITIVE
    )
    ranks: list[int] | None = setting(
        None, "values of the method's rank option to try, e.g. 4,8,16 (default: fixed)", within=COUNT
    )
    train_fraction: float = setting(
        0.1, "share of the training questions each trial trains on (a seeded sample)", within=Range(above=0, at_most=1)
    )
    train_limit: int | None = setting(
        None,
        "or an exact number of training questions per trial (overrides --train-fraction; default: none)",
        within=COUNT,
    )
    epochs: float = setting(1.0, "epochs per trial", within=POSITIVE)
    eval_limit: int | None = setting(1000, "held-out training questions each trial is scored on", within=COUNT)
    sampler: str = setting("grid", "grid: every combination; tpe: --n-trials draws from the ranges", choices=SAMPLERS)
    n_trials: int | None = setting(None, "TPE: number of trials (default: none; --sampler tpe needs it)", within=COUNT)
    storage: str | None = setting(
        None,
        "Optuna storage URL, e.g. postgresql://user@host/db to share the study between machines "
        "(pip install 'peftqa[postgres]'; default: sqlite file in the sweep dir)",
    )
    workers: int | None = setting(
        None,
        "worker processes running trials side by side (default 1): one GPU each while there are GPUs "
        "enough, else sharing; on a CPU the cores are split between them",
        within=COUNT,
    )
    workers_per_gpu: int | None = setting(
        None,
        "workers sharing each GPU (without --workers: this many on every GPU; default: as even as --workers allows)",
        within=COUNT,
    )
    prune: bool = setting(True, "stop a trial early when it falls below the median (MedianPruner, epochs >= 2)")
    extend_edges: int = setting(
        0, "grid: times a best lr on the grid's edge adds a point beyond it", within=NOT_NEGATIVE
    )
    output_dir: str | None = setting(None, "the sweep's folder (default: sweeps/<method>-<model>)")
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored in sweep.json

    def __post_init__(self) -> None:
        check_fields(self)
        problems = [f"{flag(name)}: names no value" for name in ("lrs", "ranks") if getattr(self, name) == []]
        if self.ranks is not None and get_method(self.base.method).rank_option is None:
            problems.append(f"method '{self.base.method}' has no rank option; drop --ranks")
        if self.sampler == "tpe" and not self.n_trials:
            problems.append("--sampler tpe needs --n-trials")
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
    train = question_source(config.base.data.data_dir, config.base.questions, "train")
    total = len(load_squad(train, role="train"))
    return max(1, round(config.train_fraction * total))


def trial_dir(folder: Path, params: dict[str, Any]) -> Path:
    """Named by the parameters, so a re-run of an interrupted point resumes its checkpoint."""
    return folder / "trials" / "-".join(f"{name}{value:g}" for name, value in sorted(params.items()))


def trial_config(config: SweepConfig, params: dict[str, Any], questions: int) -> RunConfig:
    options = dict(config.base.method_options)
    options.update({k: v for k, v in params.items() if k != "lr"})
    return config.base.replace(
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
        tracking_dir=_trial_tracking_dir(config),
    )


def _trial_tracking_dir(config: SweepConfig) -> str | None:
    """TensorBoard with --tracking-dir: the trials' event folders grouped under their sweep's name (an
    MLflow --tracking-dir is the one store the sweep's run and its trials share)."""
    base = config.base
    if base.tracking.report_to == "tensorboard" and base.tracking.tracking_dir:
        return str(Path(base.tracking.tracking_dir) / f"sweep-{config.folder.name}")
    return base.tracking.tracking_dir
