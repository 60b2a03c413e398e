"""One worker's share of a sweep: plan what is left of the study (failed grid points are queued
again), ask for a trial only while some point is unclaimed, give way when an earlier trial holds the
same point, report each held-out evaluation to the pruner, and stop once every point is finished by any
worker."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peftqa.sweep.rungs import halving_hooks, held_out_score, read_evaluations
from peftqa.sweep.storage import folder_lock, grace_seconds, open_study
from peftqa.sweep.sweep_config import Rungs, SweepConfig, grid_point, search_space, trial_config


def _trial_point(trial) -> tuple | None:
    """A trial's grid point: its parameters, or for a queued trial the ones it was queued with."""
    params = trial.params or trial.system_attrs.get("fixed_params")
    return grid_point(params) if params else None


@dataclass
class TrialPlan:
    todo: int  # trials still to finish
    runnable: bool  # whether asking for a trial now gets a point nobody is running
    waiting_on: list[int]  # RUNNING trials of other workers this one would wait for


def plan_trials(study, config: SweepConfig) -> TrialPlan:
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
        return TrialPlan(todo, finished + pending < (config.n_trials or 0), running)
    space = search_space(config)
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    finished_points = {_trial_point(t) for t in trials if t.state in done}
    pending_points = {_trial_point(t) for t in trials if t.state in pending_states}
    failed_points = {_trial_point(t) for t in trials if t.state == TrialState.FAIL}
    missing = [p for p in grid if grid_point(p) not in finished_points]
    for params in missing:
        if grid_point(params) in failed_points and grid_point(params) not in pending_points:
            study.enqueue_trial(params)
            pending_points.add(grid_point(params))
    queued = any(t.state == TrialState.WAITING for t in trials)
    unclaimed = [p for p in missing if grid_point(p) not in pending_points]
    # A trial another worker has just asked for runs before its objective suggests the parameters:
    # RUNNING with no point yet, it will take one of the unclaimed points (the grid sampler chose it
    # at ask time), so it counts against them, or this worker would ask too and draw the same point.
    starting = sum(1 for t in trials if t.state == TrialState.RUNNING and _trial_point(t) is None)
    return TrialPlan(len(missing), len(unclaimed) > starting or queued, running)


def prepare_resume(study, config: SweepConfig, alone: bool = True) -> int:
    """Trials still to run. With the default local database and no other command on this folder
    (`alone`), a RUNNING trial was killed, so it is marked failed now (and queued again by plan_trials)."""
    from optuna.trial import TrialState

    if config.storage is None and alone:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
    return plan_trials(study, config).todo


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


def earlier_claim(study, number: int, point: tuple, patience_s: float = 30.0) -> int | None:
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


def _objective(
    config: SweepConfig, questions: int, rungs: Rungs, log: Callable[[str], None], say: Callable[[str], None]
):
    """One trial: `log` gets the training's lines, `say` one line when the trial ends."""
    import optuna

    from peftqa.training.loop import train

    space = search_space(config)

    def objective(trial) -> float:
        params = {"lr": trial.suggest_float("lr", min(space["lr"]), max(space["lr"]), log=True)}
        for name, values in space.items():
            if name != "lr":
                params[name] = trial.suggest_int(name, min(values), max(values))
        shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
        if config.sampler == "grid":
            earlier = earlier_claim(trial.study, trial.number, grid_point(params))
            if earlier is not None:
                trial.set_user_attr("duplicate_of", earlier)
                _GAVE_WAY.add(trial.number)
                log(f"trial {trial.number}: {shown} is trial {earlier}'s point; leaving it to that one")
                raise _Duplicate(f"grid point {shown} belongs to trial {earlier}")
        trial.set_user_attr("worker", worker_id())
        run = trial_config(config, params, questions, rungs)
        trial.set_user_attr("run_dir", run.output_dir)
        log(f"trial {trial.number}: {shown} -> {run.output_dir}")
        began = time.perf_counter()
        try:
            metrics = train(run, resume=True, log=log, hooks=halving_hooks(trial, rungs))
        except optuna.TrialPruned as pruned:
            say(f"trial {trial.number} ({shown}): pruned, {pruned}")
            raise
        # Chosen on the held-out questions, whatever else the trial was scored on (dev, as a final run).
        held_out = held_out_score(metrics)
        recorded = read_evaluations(run.output_dir).get(held_out["step"])
        trial.set_user_attr("f1_ci", recorded["f1_ci"] if recorded else metrics["f1_ci"])
        trial.set_user_attr("exact_match", held_out["exact_match"])
        trial.set_user_attr("eval_loss", held_out["eval_loss"])
        for key in ("train_seconds", "trainable_params", "steps", "kept_step"):
            trial.set_user_attr(key, metrics[key])
        if config.score_dev:
            trial.set_user_attr("dev_f1", metrics["f1"])
        say(
            f"trial {trial.number} ({shown}): held-out F1 {held_out['f1']:.2f} EM {held_out['exact_match']:.2f} "
            f"after {metrics['steps']} steps, in {time.perf_counter() - began:.0f} s"
        )
        return held_out["f1"]

    return objective


def _poll_seconds() -> float:
    # Often enough that a dead sibling's point is taken up soon after its grace period ends.
    return max(0.5, min(10.0, grace_seconds() / 4))


def work(
    config: SweepConfig,
    questions: int,
    rungs: Rungs,
    log: Callable[[str], None] = print,
    say: Callable[[str], None] | None = None,
    worker: int = 0,
) -> int:
    """One worker's loop: run trials until every point of the study is finished (by any worker);
    returns how many this worker finished. Safe to run in any number of processes and machines
    at once on one storage (see the package docstring, peftqa.sweep)."""
    import warnings

    import optuna

    say = say or log
    study = open_study(config, worker, rungs)
    _GAVE_WAY.clear()
    _quiet_giving_way()
    objective = _objective(config, questions, rungs, log, say)
    mine: list[int] = []
    announced: list[int] | None = None
    while True:
        # A trial whose worker died goes RUNNING -> FAIL once its heartbeat is older than the grace period.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        plan = plan_trials(study, config)
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


def _work_in_process(config: SweepConfig, questions: int, rungs: Rungs, worker: int, log, say) -> int:
    """What `peftqa.workers` runs in worker `worker` (1-based) of this command."""
    with folder_lock(config):
        return work(config, questions, rungs, log, say, worker)
