"""`peftqa sweep`: choose a method's learning rate (and rank) by F1 on held-out training articles.

Each trial is one ordinary `train()` run in its own folder under the sweep directory, trained on a
seeded sample of the training articles and scored on other training articles held out from it
(`eval_split="validation"`), never on dev: dev is for reporting the choice, not for making it;
the best trial is the highest F1, EM breaking ties (never the lowest loss: loss and F1 disagree).
The Optuna study lives in `optuna.db` (SQLite) in the sweep directory unless `storage` names
another database, so an interrupted sweep resumes: finished trials are kept, a killed trial is run
again and its run folder resumes from its checkpoint (folders are named by their parameters, and a
finished folder is never trained twice). Grids use Optuna's GridSampler, which lets several workers
share one database; TPE draws `n_trials` points from the grid's ranges instead.

Pruning: `train()` hands each epoch's held-out F1 to an `on_epoch` hook, through which Optuna's
MedianPruner stops a trial between epochs (from epoch 1 on, once two
trials have finished), never after the last one. With `epochs=1` nothing is pruned.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import runs
from peftqa.config import RunConfig
from peftqa.data import load_squad, split_path
from peftqa.errors import PeftqaError
from peftqa.methods import get_method

SWEEP_JSON = "sweep.json"
SWEEP_PNG = "sweep.png"
STUDY_DB = "optuna.db"
LR_FROM_PREFIX = "from:"

# What every trial is scored on: training articles held out from the trials' training (data.QuestionChoice).
_TRIAL_EVAL_SPLIT = "validation"
# Seconds between a trial's heartbeats; a trial silent for `_GRACE_S` is marked failed and re-run.
_HEARTBEAT_S = 60
_GRACE_S = 180


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


def _storage(config: SweepConfig):
    import warnings

    import optuna

    config.folder.mkdir(parents=True, exist_ok=True)
    url = config.storage or f"sqlite:///{(config.folder / STUDY_DB).resolve()}"
    # Heartbeats let workers sharing one database tell a crashed trial from a running one
    # (Optuna flags the option as experimental; the notice is for Optuna's developers).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=_HEARTBEAT_S, grace_period=_GRACE_S)


def _study_name(config: SweepConfig) -> str:
    """One study per method, model, sampler and search space: a changed grid starts a new study, and
    its points already run elsewhere come back at once from their finished trial folders."""
    import hashlib
    import json

    space = json.dumps(search_space(config) if config.sampler == "grid" else {}, sort_keys=True)
    # Trials scored on held-out training articles are a new study: one scored on dev must not count.
    space += f"|scored on {_TRIAL_EVAL_SPLIT}"
    digest = hashlib.sha1(space.encode()).hexdigest()[:8]
    return f"{config.base.method}-{Path(config.base.model).name}-{config.sampler}-{digest}"


def _grid_sampler(space: dict[str, list], seed: int):
    """Optuna's GridSampler, also for the re-queued points of failed trials: its `after_trial` reads
    a grid id that enqueued trials lack (KeyError in Optuna 5.0), so it is skipped for those."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            if "grid_id" in trial.system_attrs:
                super().after_trial(study, trial, state, values)

    return GridSampler(space, seed=seed)


def open_study(config: SweepConfig):
    """Create or reopen the sweep's study (maximising F1)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own per-trial lines say what matters
    space = search_space(config)
    if config.sampler == "grid":
        sampler = _grid_sampler(space, config.base.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=config.base.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if config.prune else optuna.pruners.NopPruner()
    return optuna.create_study(
        study_name=_study_name(config),
        storage=_storage(config),
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def _point(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def _prepare_resume(study, config: SweepConfig) -> int:
    """Trials still to run. With the default local database a RUNNING trial was killed (one process
    per sweep folder), so it is marked failed now; grid points whose only trials failed are queued
    again, because the grid sampler counts a failed point as visited."""
    from optuna.trial import TrialState

    if config.storage is None:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    finished = {_point(t.params) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    if config.sampler == "tpe":
        return max(0, (config.n_trials or 0) - len(finished))
    space = search_space(config)
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    pending = {_point(t.params) for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)}
    failed = {_point(t.params) for t in trials if t.state == TrialState.FAIL}
    missing = [p for p in grid if _point(p) not in finished]
    for params in missing:
        if _point(params) in failed and _point(params) not in pending:
            study.enqueue_trial(params)
    return len(missing)


def _pruning_hook(trial, last_epoch: int) -> Callable[[dict[str, Any]], None]:
    """Reports each epoch's dev F1 to Optuna and stops the trial when the pruner says so."""

    def on_epoch(entry: dict[str, Any]) -> None:
        import optuna

        trial.report(entry["f1"], step=entry["epoch"])
        # After the last epoch the trial is done: pruning it would only throw its result away.
        if entry["epoch"] < last_epoch and trial.should_prune():
            raise optuna.TrialPruned(f"F1 {entry['f1']:.2f} after epoch {entry['epoch']}: below the median")

    return on_epoch


def _objective(config: SweepConfig, questions: int, log: Callable[[str], None]):
    from peftqa.train import train

    space = search_space(config)

    def objective(trial) -> float:
        params = {"lr": trial.suggest_float("lr", min(space["lr"]), max(space["lr"]), log=True)}
        for name, values in space.items():
            if name != "lr":
                params[name] = trial.suggest_int(name, min(values), max(values))
        run = trial_config(config, params, questions)
        log(f"trial {trial.number}: {', '.join(f'{k}={v:g}' for k, v in params.items())} -> {run.output_dir}")
        metrics = train(run, resume=True, log=log, on_epoch=_pruning_hook(trial, math.ceil(config.epochs)))
        for key in ("exact_match", "dev_loss", "train_seconds", "trainable_params"):
            trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("run_dir", run.output_dir)
        return metrics["f1"]

    return objective


def run_sweep(config: SweepConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the sweep; writes sweep.json and sweep.png and returns the summary.

    With `extend_edges`, a best learning rate on the edge of the grid adds one more point beyond it
    (same ratio as the last step) and the sweep goes on, up to that many times; points already run
    come back at once from their trial folders.

    Args:
        config: what to search; `config.base` is the run template.
        log: where progress lines go.
    """
    questions = questions_per_trial(config)
    summary = _run_grid(config, questions, log)
    for _ in range(config.extend_edges if config.sampler == "grid" else 0):
        lrs = _extended_lrs(config.learning_rates, summary["best"])
        if lrs is None:
            break
        log(f"sweep {config.base.method}: the best lr is on the grid's edge; extending the grid to {lrs}")
        config = dataclasses.replace(config, lrs=lrs)
        summary = _run_grid(config, questions, log)
    for warning in summary["edge_warnings"]:
        log(f"warning: {warning}")
    return summary


def _extended_lrs(lrs: list[float], best: dict[str, Any] | None) -> list[float] | None:
    """The grid plus one point past the edge the best lr sits on; None when it is inside."""
    if best is None or len(lrs) < 2:
        return None
    lr = best["params"]["lr"]
    if math.isclose(lr, lrs[-1]):
        return [*lrs, float(f"{lrs[-1] * lrs[-1] / lrs[-2]:.3g}")]
    if math.isclose(lr, lrs[0]):
        return [float(f"{lrs[0] * lrs[0] / lrs[1]:.3g}"), *lrs]
    return None


def _run_grid(config: SweepConfig, questions: int, log: Callable[[str], None]) -> dict[str, Any]:
    study = open_study(config)
    todo = _prepare_resume(study, config)
    log(
        f"sweep {config.base.method}: {todo} trial(s) to run ({config.sampler}: {search_space(config)}), "
        f"{questions} train questions x {config.epochs:g} epoch(s), "
        f"scored on {config.eval_limit or 'all'} held-out training questions (whole articles, never dev)"
    )
    if todo:
        study.optimize(_objective(config, questions, log), n_trials=todo, catch=())
    summary = summarize(study, config, questions)
    write_sweep(config.folder, summary)
    best = summary["best"]
    if best:
        log(f"best: {best['params']} F1 {best['f1']:.2f} EM {best['exact_match']:.2f} ({best['run_dir']})")
    return summary


def _trial_row(trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "f1": trial.value,
        "exact_match": trial.user_attrs.get("exact_match"),
        "dev_loss": trial.user_attrs.get("dev_loss"),
        "train_seconds": trial.user_attrs.get("train_seconds"),
        "trainable_params": trial.user_attrs.get("trainable_params"),
        "run_dir": trial.user_attrs.get("run_dir"),
        "epoch_f1": {str(epoch): f1 for epoch, f1 in trial.intermediate_values.items()},
    }


def pick_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest F1 among complete trials, EM breaking ties."""
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["f1"] is not None]
    return max(complete, key=lambda r: (r["f1"], r["exact_match"] or 0.0), default=None)


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


def summarize(study, config: SweepConfig, questions: int) -> dict[str, Any]:
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
        "validation_questions": config.base.validation_questions,
        "seed": config.base.seed,
        "storage": config.storage or STUDY_DB,
        "study_name": study.study_name,
        "base_config": config.base.to_dict(),
        "trials": rows,
        "best": best,
        # What the original study chose by (lowest dev loss), kept so the two rules can be compared.
        "best_by_dev_loss": min(
            (r for r in rows if r["state"] == "COMPLETE" and r["dev_loss"] is not None),
            key=lambda r: r["dev_loss"],
            default=None,
        ),
        "edge_warnings": edge_warnings(best, space) if config.sampler == "grid" else [],
        **config.extra,
    }


def write_sweep(folder: Path, summary: dict[str, Any]) -> None:
    from peftqa.report_plots import plot_sweep

    runs.write_json_atomic(folder / SWEEP_JSON, summary)
    plot_sweep(summary, folder / SWEEP_PNG)


def read_sweep(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SWEEP_JSON
    if not path.is_file():
        raise PeftqaError(f"{folder}: no {SWEEP_JSON} (not a sweep directory, or the sweep has not finished)")
    return runs.read_json(path)


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
