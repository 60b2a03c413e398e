"""`peftqa sweep`: choose a method's learning rate (and rank) by F1 on held-out training articles.

Each trial is one ordinary `train()` run in its own folder under the sweep directory, trained on a
seeded sample of the training articles and scored on other training articles held out from it
(`eval_split="validation"`), never on dev: dev is for reporting the choice, not for making it;
the best trial is the highest F1, EM breaking ties (never the lowest loss: loss and F1 disagree).
The Optuna study lives in `optuna.db` (SQLite) in the sweep directory unless `storage` names
another database, so an interrupted sweep resumes: finished trials are kept, a killed trial is run
again and its run folder resumes from its checkpoint (folders are named by their parameters, and a
finished folder is never trained twice). Grids use Optuna's GridSampler; TPE draws `n_trials` points
from the grid's ranges instead.

Workers: `workers=K` starts K processes (peftqa.workers) on one study, and other machines may join
with the same command and a shared `storage` (PostgreSQL). Every grid point runs exactly once:
a worker asks for a trial only while some point is neither finished nor claimed, a trial that
finds an earlier trial of its point gives way (FAIL, `duplicate_of`), and a worker stops once every
point is COMPLETE or PRUNED. A trial whose worker died stays RUNNING until its heartbeat is older
than the grace period (PEFTQA_SWEEP_GRACE_S, default 180 s); then a waiting worker marks it failed
and runs the point again, resuming its folder's checkpoint.

Pruning: `train()` hands each epoch's held-out F1 to an `on_epoch` hook, through which Optuna's
MedianPruner stops a trial between epochs (from epoch 1 on, once two
trials have finished), never after the last one. With `epochs=1` nothing is pruned.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
# Seconds between a trial's heartbeats; a trial silent for the grace period is marked failed and re-run.
_HEARTBEAT_S = 60
_GRACE_S = 180
GRACE_ENV = "PEFTQA_SWEEP_GRACE_S"  # the grace period in seconds (tests use a few)
POSTGRES_EXTRA = "pip install 'peftqa[postgres]'"
LOCK_FILE = ".sweep.lock"


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


def grace_seconds() -> int:
    """How long a RUNNING trial may go without a heartbeat before it counts as dead (PEFTQA_SWEEP_GRACE_S)."""
    text = os.environ.get(GRACE_ENV)
    if text is None:
        return _GRACE_S
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise PeftqaError(f"{GRACE_ENV} must be a whole number of seconds >= 2, got {text!r}")
    return value


def _heartbeat_seconds(grace: int) -> int:
    # Three heartbeats per grace period: one late heartbeat must not fail a live trial.
    return max(1, min(_HEARTBEAT_S, grace // 3))


def storage_url(config: SweepConfig) -> str:
    """The SQLAlchemy URL of the sweep's study. `postgresql://` means psycopg 3 (the `postgres` extra):
    SQLAlchemy before 2.1 would read it as psycopg2, which peftqa does not install."""
    if config.storage is None:
        return f"sqlite:///{(config.folder / STUDY_DB).resolve()}"
    url = config.storage
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url.removeprefix(prefix)
    if url.startswith("postgresql+psycopg://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PeftqaError(
                f"--storage {_shown(config.storage)} needs the PostgreSQL driver psycopg: {POSTGRES_EXTRA}"
            ) from None
    return url


def _shown(url: str) -> str:
    """A storage URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: nothing to hide
        return url


def _storage(config: SweepConfig):
    import warnings

    import optuna
    import sqlalchemy.exc

    config.folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(config)
    # SQLite: K workers write to one file; wait for the lock rather than fail after the default 5 s.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    grace = grace_seconds()
    problem: Exception | None = None
    # Workers started at the same moment on an empty database race to create its tables; the
    # loser's error goes away on a second try.
    for attempt in range(3):
        try:
            # Heartbeats let workers sharing one database tell a crashed trial from a running one
            # (Optuna flags the option as experimental; the notice is for Optuna's developers).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=_heartbeat_seconds(grace), grace_period=grace
                )
        except sqlalchemy.exc.SQLAlchemyError as error:
            problem = error
            time.sleep(1 + attempt)
    reason = str(getattr(problem, "orig", None) or problem).strip().splitlines()[0]
    raise PeftqaError(f"cannot open the Optuna storage {_shown(url)}: {reason}")


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
    """Optuna's GridSampler without its `after_trial`, which only stops the optimize loop once the
    grid looks done: the workers decide that themselves (`work` runs one trial per optimize call),
    and it failed on re-queued points (KeyError: no grid id) and on a `tell` outside optimize."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return GridSampler(space, seed=seed)


def open_study(config: SweepConfig, worker: int = 0):
    """Create or reopen the sweep's study (maximising F1). Workers draw with their own random state,
    so that two asking at the same moment rarely draw the same point."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own per-trial lines say what matters
    space = search_space(config)
    if config.sampler == "grid":
        # The seed shuffles the grid, and a grid id means the same point to every worker only if
        # all shuffle alike: one seed for all, then each worker's own random state for its draws.
        sampler = _grid_sampler(space, config.base.seed)
        if worker:
            sampler.reseed_rng()
    else:
        sampler = optuna.samplers.TPESampler(seed=config.base.seed + worker)
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


def _trial_point(trial) -> tuple | None:
    """A trial's grid point: its parameters, or for a queued trial the ones it was queued with."""
    params = trial.params or trial.system_attrs.get("fixed_params")
    return _point(params) if params else None


@contextmanager
def _folder_lock(config: SweepConfig) -> Iterator[bool]:
    """Held (shared) by every process of every command working on this sweep folder. Yields whether
    this command is the only one: then, with the local default database, a RUNNING trial is a
    killed process's and can be failed at once instead of after the heartbeat's grace period."""
    import fcntl

    config.folder.mkdir(parents=True, exist_ok=True)
    with open(config.folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        except OSError:  # a file system without locks (some network ones): assume company, trust heartbeats
            yield False
            return
        fcntl.flock(handle, fcntl.LOCK_SH)  # from exclusive: now others may join, and see they are not alone
        try:
            yield alone
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Plan:
    todo: int  # trials still to finish
    runnable: bool  # whether asking for a trial now gets a point nobody is running
    waiting_on: list[int]  # RUNNING trials of other workers this one would wait for


def _plan(study, config: SweepConfig) -> _Plan:
    """What is left. Grid points whose only trials failed are queued again (the grid sampler counts a
    failed point as visited); a point with a RUNNING or queued trial is someone else's."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    pending_states = (TrialState.RUNNING, TrialState.WAITING)
    running = sorted(t.number for t in trials if t.state == TrialState.RUNNING)
    if config.sampler == "tpe":
        finished = sum(t.state in done for t in trials)
        pending = sum(t.state in pending_states for t in trials)
        todo = max(0, (config.n_trials or 0) - finished)
        return _Plan(todo, finished + pending < (config.n_trials or 0), running)
    space = search_space(config)
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    finished_points = {_trial_point(t) for t in trials if t.state in done}
    pending_points = {_trial_point(t) for t in trials if t.state in pending_states}
    failed_points = {_trial_point(t) for t in trials if t.state == TrialState.FAIL}
    missing = [p for p in grid if _point(p) not in finished_points]
    for params in missing:
        if _point(params) in failed_points and _point(params) not in pending_points:
            study.enqueue_trial(params)
            pending_points.add(_point(params))
    queued = any(t.state == TrialState.WAITING for t in trials)
    unclaimed = [p for p in missing if _point(p) not in pending_points]
    return _Plan(len(missing), bool(unclaimed) or queued, running)


def _prepare_resume(study, config: SweepConfig, alone: bool = True) -> int:
    """Trials still to run. With the default local database and no other command on this folder
    (`alone`), a RUNNING trial was killed, so it is marked failed now (and queued again by _plan)."""
    from optuna.trial import TrialState

    if config.storage is None and alone:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
    return _plan(study, config).todo


class _Duplicate(Exception):
    """This trial's grid point belongs to an earlier trial (workers asked at the same moment)."""


_GAVE_WAY: set[int] = set()  # this worker's trials (of its current study) that raised _Duplicate


class _QuietGivingWay(logging.Filter):
    """Optuna logs a failed trial with its traceback; a trial that gave way did nothing wrong, and
    the console should keep one line per finished trial."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {number} failed") for number in _GAVE_WAY)


def _quiet_giving_way() -> None:
    logger = logging.getLogger("optuna.study._optimize")  # where Optuna logs failed trials
    if not any(isinstance(f, _QuietGivingWay) for f in logger.filters):
        logger.addFilter(_QuietGivingWay())


def _earlier_claim(study, number: int, point: tuple, patience_s: float = 30.0) -> int | None:
    """The number of an earlier trial (not failed) of the same point, or None. An earlier RUNNING
    trial whose parameters are not written yet may be about to take this point: wait for them (a
    few milliseconds normally; a worker that died in between is ignored after `patience_s`)."""
    from optuna.trial import TrialState

    deadline = time.monotonic() + patience_s
    while True:
        unknown = False
        for trial in study.get_trials(deepcopy=False):
            if trial.number >= number or trial.state == TrialState.FAIL:
                continue
            theirs = _trial_point(trial)
            if theirs == point:
                return trial.number
            unknown = unknown or (theirs is None and trial.state == TrialState.RUNNING)
        if not unknown or time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def worker_id() -> str:
    """Which process runs a trial (stored with it): host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pruning_hook(trial, last_epoch: int) -> Callable[[dict[str, Any]], None]:
    """Reports each epoch's held-out F1 to Optuna and stops the trial when the pruner says so."""

    def on_epoch(entry: dict[str, Any]) -> None:
        import optuna

        trial.report(entry["f1"], step=entry["epoch"])
        # After the last epoch the trial is done: pruning it would only throw its result away.
        if entry["epoch"] < last_epoch and trial.should_prune():
            raise optuna.TrialPruned(f"F1 {entry['f1']:.2f} after epoch {entry['epoch']}: below the median")

    return on_epoch


def _objective(config: SweepConfig, questions: int, log: Callable[[str], None], say: Callable[[str], None]):
    """One trial: `log` gets the training's lines, `say` one line when the trial ends."""
    import optuna

    from peftqa.train import train

    space = search_space(config)

    def objective(trial) -> float:
        params = {"lr": trial.suggest_float("lr", min(space["lr"]), max(space["lr"]), log=True)}
        for name, values in space.items():
            if name != "lr":
                params[name] = trial.suggest_int(name, min(values), max(values))
        shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
        if config.sampler == "grid":
            earlier = _earlier_claim(trial.study, trial.number, _point(params))
            if earlier is not None:
                trial.set_user_attr("duplicate_of", earlier)
                _GAVE_WAY.add(trial.number)
                log(f"trial {trial.number}: {shown} is trial {earlier}'s point; leaving it to that one")
                raise _Duplicate(f"grid point {shown} belongs to trial {earlier}")
        trial.set_user_attr("worker", worker_id())
        run = trial_config(config, params, questions)
        log(f"trial {trial.number}: {shown} -> {run.output_dir}")
        began = time.perf_counter()
        try:
            metrics = train(run, resume=True, log=log, on_epoch=_pruning_hook(trial, math.ceil(config.epochs)))
        except optuna.TrialPruned as pruned:
            say(f"trial {trial.number} ({shown}): pruned, {pruned}")
            raise
        for key in ("exact_match", "dev_loss", "train_seconds", "trainable_params"):
            trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("run_dir", run.output_dir)
        say(
            f"trial {trial.number} ({shown}): F1 {metrics['f1']:.2f} EM {metrics['exact_match']:.2f} "
            f"in {time.perf_counter() - began:.0f} s"
        )
        return metrics["f1"]

    return objective


def _poll_seconds() -> float:
    # Often enough that a dead sibling's point is taken up soon after its grace period ends.
    return max(0.5, min(10.0, grace_seconds() / 4))


def work(
    config: SweepConfig,
    questions: int,
    log: Callable[[str], None] = print,
    say: Callable[[str], None] | None = None,
    worker: int = 0,
) -> int:
    """One worker's loop: run trials until every point of the study is finished (by any worker);
    returns how many this worker finished. Safe to run in any number of processes and machines
    at once on one storage (see the module docstring)."""
    import warnings

    import optuna

    say = say or log
    study = open_study(config, worker)
    _GAVE_WAY.clear()
    _quiet_giving_way()
    objective = _objective(config, questions, log, say)
    mine: list[int] = []
    announced: list[int] | None = None
    while True:
        # A trial whose worker died goes RUNNING -> FAIL once its heartbeat is older than the grace period.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        plan = _plan(study, config)
        if not plan.todo:
            return len(mine)
        if not plan.runnable:
            # Asking now would make the grid sampler run a point again; the points left are running
            # elsewhere, and one of them may have died: wait for it to finish or go stale.
            if plan.waiting_on != announced:
                say(f"waiting for trial(s) {', '.join(map(str, plan.waiting_on))} of other workers")
                announced = plan.waiting_on
            time.sleep(_poll_seconds())
            continue
        announced = None
        study.optimize(objective, n_trials=1, catch=(_Duplicate,), callbacks=[_count_finished(mine)])


def _count_finished(numbers: list[int]) -> Callable[[Any, Any], None]:
    def callback(_study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            numbers.append(trial.number)

    return callback


def _work_in_process(config: SweepConfig, questions: int, worker: int, log, say) -> int:
    """What `peftqa.workers` runs in worker `worker` (1-based) of this command."""
    with _folder_lock(config):
        return work(config, questions, log, say, worker)


def run_sweep(config: SweepConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the sweep; writes sweep.json and sweep.png and returns the summary.

    With `extend_edges`, a best learning rate on the edge of the grid adds one more point beyond it
    (same ratio as the last step) and the sweep goes on, up to that many times; points already run
    come back at once from their trial folders.

    Args:
        config: what to search; `config.base` is the run template.
        log: where progress lines go.
    """
    storage_url(config)  # a storage that cannot work is one line now, not after loading the data
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
    from peftqa.workers import plan_slots, visible_gpus, worker_count

    study = open_study(config)
    with _folder_lock(config) as alone:
        todo = _prepare_resume(study, config, alone)
        # No more workers than trials left (each then gets more threads); a single one runs in this process.
        workers = min(worker_count(config.workers, config.workers_per_gpu, len(visible_gpus())), max(1, todo))
        slots = plan_slots(workers, config.workers_per_gpu) if workers > 1 else []
        log(
            f"sweep {config.base.method}: {todo} trial(s) to run ({config.sampler}: {search_space(config)}), "
            f"{questions} train questions x {config.epochs:g} epoch(s), "
            f"scored on {config.eval_limit or 'all'} held-out training questions (whole articles, never dev)"
            + (f"; {len(slots)} workers" if len(slots) > 1 else "")
        )
        failures: list[str] = []
        if todo and len(slots) > 1:
            failures = _run_workers(config, questions, slots, log)
        elif todo:
            work(config, questions, log)
    summary = summarize(study, config, questions)
    write_sweep(config.folder, summary)
    left = _plan(study, config).todo
    if left:
        raise PeftqaError(
            f"sweep {config.folder}: {left} trial(s) not finished ({'; '.join(failures) or 'workers stopped'}); "
            "run the same command again to resume"
        )
    best = summary["best"]
    if best:
        log(f"best: {best['params']} F1 {best['f1']:.2f} EM {best['exact_match']:.2f} ({best['run_dir']})")
    return summary


def _run_workers(config: SweepConfig, questions: int, slots: list, log: Callable[[str], None]) -> list[str]:
    """K worker processes on the study; returns one line per worker that failed or died (a dead
    worker's trial is run again by the others once its heartbeat is older than the grace period)."""
    from peftqa.workers import Job, run_jobs

    _prepare_inputs(config, questions, log)
    jobs = [Job(f"worker {slot.index}", _work_in_process, (config, questions, slot.index)) for slot in slots]
    outcomes = run_jobs(jobs, slots, config.folder / "workers", say=log)
    return [f"{o.label}: {o.error}" for o in outcomes if not o.ok]


def _prepare_inputs(config: SweepConfig, questions: int, log: Callable[[str], None]) -> None:
    """Fetch the model and tokenise the trials' data once, here, before K workers would each do it
    at the same time (every trial of a sweep reads the same features from the cache)."""
    from peftqa.backbone import load_tokenizer, resolve_model
    from peftqa.train import prepare_data

    first = {name: values[0] for name, values in search_space(config).items()}
    run = trial_config(config, first, questions)
    prepare_data(run, load_tokenizer(resolve_model(run.model)), log)


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

    # Workers on several machines may finish at once on one shared folder: each writes under its own
    # temporary name, then renames (the last summary written holds every trial).
    unique = f"{socket.gethostname()}-{os.getpid()}"
    partial = folder / f".{SWEEP_JSON}.{unique}.partial"
    runs.write_json_atomic(partial, summary)
    os.replace(partial, folder / SWEEP_JSON)
    picture = folder / f".sweep.{unique}.partial.png"
    plot_sweep(summary, picture)
    os.replace(picture, folder / SWEEP_PNG)


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
