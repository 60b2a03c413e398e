"""Where a sweep's Optuna study lives and how processes share it: the storage URL (a SQLite file in
the sweep folder, or a shared PostgreSQL), heartbeats and their grace period, the study's name and
sampler, and the folder lock that tells a command whether it is alone on the sweep folder."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from peftqa.errors import PeftqaError
from peftqa.sweep.sweep_config import _TRIAL_EVAL_SPLIT, Rungs, SweepConfig, grid_points, search_space

if TYPE_CHECKING:
    import optuna

STUDY_DB = "optuna.db"
# Seconds between a trial's heartbeats; a trial silent for the grace period is marked failed and re-run.
_HEARTBEAT_S = 60
_GRACE_S = 180
GRACE_ENV = "PEFTQA_SWEEP_GRACE_S"  # the grace period in seconds (tests use a few)
POSTGRES_EXTRA = "pip install 'peftqa[postgres]'"
LOCK_FILE = ".sweep.lock"


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
    """One study per method, model, sampler, searched options other than the learning rate, and the
    way trials are run and judged. The learning rates are not part of it: a grid extended past its
    edge (or given more points) goes on in the same study, so its pruned points stay pruned and
    successive halving compares the new points with every trial run so far."""
    import hashlib
    import json

    space = {k: v for k, v in search_space(config).items() if k != "lr"} if config.sampler == "grid" else {}
    # Trials scored on held-out training articles are a new study: one scored on dev must not count;
    # so are trials judged on another budget or other rungs.
    judged = {
        "scored on": _TRIAL_EVAL_SPLIT,
        "halving": [config.prune, config.first_rung, config.halving_factor],
        "budget": [config.train_limit, config.train_fraction, config.epochs, config.score_dev],
    }
    digest = hashlib.sha1(json.dumps([space, judged], sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.base.method}-{Path(config.base.model).name}-{config.sampler}-{digest}"


def _grid_sampler(space: dict[str, list], seed: int):
    """Optuna's GridSampler without its `after_trial`, which only stops the optimize loop once the
    grid looks done: the workers decide that themselves (`work` runs one trial per optimize call),
    and it failed on re-queued points (KeyError: no grid id) and on a `tell` outside optimize.

    Its points run in `grid_points`' order (from the grid's centre outward) instead of shuffled: trial
    n of a new study takes point n (GridSampler's rule for its first trials), so workers asking at once
    still take different points."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    sampler = GridSampler(space, seed=seed)
    if isinstance(getattr(sampler, "_all_grids", None), list):  # the order is a saving, not a condition
        names = sorted(space)  # GridSampler's own order of the parameters in a grid point
        sampler._all_grids = [tuple(point[name] for name in names) for point in grid_points(space)]
    return sampler


def open_study(config: SweepConfig, worker: int = 0, rungs: Rungs | None = None) -> optuna.Study:
    """Create or reopen the sweep's study (maximising held-out F1). Workers draw with their own random
    state, so that two asking at the same moment rarely draw the same point. With `rungs` (and
    `config.prune`) Optuna's successive-halving pruner judges the trials there; without, nothing is pruned."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own per-trial lines say what matters
    space = search_space(config)
    if config.sampler == "grid":
        # The seed shuffles the grid, and a grid id means the same point to every worker only if
        # all shuffle alike: one seed for all, then each worker's own random state for its draws.
        sampler = _grid_sampler(space, config.base.optimisation.seed)
        if worker:
            sampler.reseed_rng()
    else:
        sampler = optuna.samplers.TPESampler(seed=config.base.optimisation.seed + worker)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if config.prune and rungs is not None:
        # Asynchronous successive halving: at each rung a trial goes on only if its held-out F1 is among
        # the top 1/factor of the trials that reached the rung so far (the best, while they are fewer
        # than 2 x factor), so the rates that survive are judged after the whole trial's steps.
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs.first, reduction_factor=rungs.factor)
    return optuna.create_study(
        study_name=_study_name(config),
        storage=_storage(config),
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


@contextmanager
def folder_lock(config: SweepConfig) -> Iterator[bool]:
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
