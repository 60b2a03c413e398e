"""What a sweep searches: its settings (SweepConfig), the grid they span, and the run each grid point
becomes (`trial_config`, in a folder named by the point's parameters)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa.checks import COUNT, NOT_NEGATIVE, POSITIVE, Range, check_fields, flag
from peftqa.data import load_squad, question_source
from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.settings.fields import setting
from peftqa.settings.groups import workers_per_gpu_setting, workers_setting
from peftqa.settings.run_config import RunConfig

SAMPLERS = ("grid", "tpe")


# What every trial is scored on: training articles held out from the trials' training (data.QuestionChoice).
_TRIAL_EVAL_SPLIT = "validation"
# The run settings every trial gets from the sweep (trial_config), so `peftqa sweep` offers no run flag for
# them: the learning rate is searched, the scored split is fixed (held-out articles, or dev with
# --score-dev), the held-out evaluations are the rungs, and SweepConfig has its own trial size (train_limit,
# epochs, eval_limit, which also sizes a --score-dev trial's held-out sample) and folder.
SET_BY_THE_SWEEP = frozenset(
    {
        "lr",
        "train_limit",
        "epochs",
        "eval_split",
        "eval_limit",
        "validation_limit",
        "eval_every_steps",
        "eval_growth",
        "max_steps",
        "output_dir",
    }
)


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
    workers: int | None = workers_setting("trials")
    workers_per_gpu: int | None = workers_per_gpu_setting()
    prune: bool = setting(
        True,
        "successive halving: a trial whose held-out F1 is behind the others' at a rung, settled on the held-out "
        "questions (paired bootstrap), stops there; the survivors train the whole trial",
    )
    first_rung: float = setting(
        0.25,
        "share of a trial's steps after which its held-out F1 is first compared with the other trials'",
        within=Range(above=0, at_most=1),
    )
    halving_factor: int = setting(
        4,
        "successive halving: rungs at first_rung x this^k of a trial's steps, about 1 trial in this many going on",
        within=Range(at_least=2),
    )
    score_dev: bool = setting(
        False,
        "each trial is a final run: scored on --eval-limit held-out training questions while it trains (chosen and "
        "pruned on them) and, once it finishes, on dev (that many questions when --eval-limit or the preset sets "
        "it, else all)",
    )
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


def grid_point(params: dict[str, Any]) -> tuple:
    """A trial's parameters as a hashable, ordered key: two trials of one grid point have the same one."""
    return tuple(sorted(params.items()))


def grid_points(space: dict[str, list]) -> list[dict[str, Any]]:
    """Every point of a grid, from the learning rates' centre outward (the lower side first at equal
    distance): successive halving lets the first trial finish whatever it scores, and each method's
    grid is centred on the rate chosen before."""
    lrs = sorted(space["lr"])
    centre = (len(lrs) - 1) / 2
    points = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    return sorted(points, key=lambda p: (abs(lrs.index(p["lr"]) - centre), lrs.index(p["lr"]), grid_point(p)))


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


@dataclass(frozen=True)
class Rungs:
    """When a trial's held-out F1 is read: at `first` steps, `first * factor^k`, and at its end (`total`).

    Successive halving compares trials at these rungs; each trial's held-out articles are scored only
    there (and at each epoch's end) unless early stopping needs an evaluation every `first` steps.
    """

    first: int
    factor: int
    total: int

    @classmethod
    def of(cls, config: SweepConfig, total_steps: int) -> Rungs:
        factor = config.halving_factor
        first = max(1, min(total_steps, round(config.first_rung * total_steps)))
        last = first
        while last * factor < total_steps:
            last *= factor
        if last > first and total_steps - last < first:
            # A rung a few steps before the end would cost an evaluation that tells nothing the end's does
            # not: the first rung moves up until that rung lies past the end.
            first = math.ceil(total_steps / (last // first))
        return cls(first, factor, total_steps)

    def steps(self) -> list[int]:
        """The rungs before the end, then the end."""
        points, point = [], self.first
        while point < self.total:
            points.append(point)
            point *= self.factor
        return [*points, self.total]


def trial_config(config: SweepConfig, params: dict[str, Any], questions: int, rungs: Rungs | None) -> RunConfig:
    """The run a grid point becomes; `rungs` None: its data only (the held-out articles kept out as the
    trials keep them), for counting its steps."""
    options = dict(config.base.method_options)
    options.update({k: v for k, v in params.items() if k != "lr"})
    # Early stopping needs evaluations at a steady pace; without it only the rungs are scored.
    steady = config.base.tracking.early_stopping_patience is not None
    scoring = (
        # A final run: dev once at the end; the held-out articles (a sample of eval_limit) while it trains.
        {"validation_limit": config.eval_limit}
        if config.score_dev
        # Trials are scored on training articles held out from every trial's training, never on dev:
        # a learning rate chosen on dev questions would flatter the dev figures reported later.
        else {"eval_split": _TRIAL_EVAL_SPLIT, "eval_limit": config.eval_limit}
    )
    return config.base.replace(
        lr=params["lr"],
        method_options=options,
        train_limit=questions,
        epochs=config.epochs,
        **scoring,
        eval_every_steps=rungs.first if rungs else 1,
        eval_growth=1.0 if steady or rungs is None else float(rungs.factor),
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
