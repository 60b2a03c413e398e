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

Pruning: successive halving. Every trial is as long as the run it stands for (`train_limit` questions,
`epochs`), and its held-out articles are scored at rungs: after `first_rung` of its steps, then
`halving_factor` times later, and at its end (`rungs`). `train()` hands each evaluation to the
`after_validation` hook, through which Optuna's SuccessiveHalvingPruner stops a trial that is behind
the trials that reached the rung before it (never at its end): a trial that moves fast early is not
chosen for it, as it survives only to be judged at the end beside the others. The grid is run from its
centre outward (each method's grid is centred on the rate chosen before), so the first trial, which
ASHA always lets finish, is the likeliest best. Pruned trials are PRUNED in the study and never
chosen; only COMPLETE ones are.

Read in the order a sweep runs: `config` (what is searched, the run each grid point becomes) ->
`storage` (the shared Optuna study, heartbeats, the folder lock) -> `trials` (one worker's loop:
plan, claim, give way, prune) -> `summary` (sweep.json, sweep.png, the best trial). This module runs
the sweep: one worker in this process or K in worker processes, and the grid's extension past its edge.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.sweep.rungs import plan_rungs
from peftqa.sweep.storage import GRACE_ENV, folder_lock, grace_seconds, open_study, storage_url
from peftqa.sweep.summary import edge_warnings, pick_best, read_sweep, resolve_lr, summarize, write_sweep
from peftqa.sweep.sweep_config import (
    Rungs,
    SweepConfig,
    grid_point,
    grid_points,
    questions_per_trial,
    search_space,
    trial_dir,
)
from peftqa.sweep.trials import _trial_point, _work_in_process, plan_trials, prepare_resume, work
from peftqa.training.tracking import require_tracker, sweep_run

# What `from peftqa.sweep import ...` offers (the cli, the study, the report and the tests import these).
__all__ = [
    "GRACE_ENV",
    "SweepConfig",
    "edge_warnings",
    "grace_seconds",
    "open_study",
    "pick_best",
    "read_sweep",
    "resolve_lr",
    "run_sweep",
    "storage_url",
    "trial_dir",
    "write_sweep",
]


def run_sweep(config: SweepConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the sweep; writes sweep.json and sweep.png and returns the summary.

    With `extend_edges`, a best learning rate on the edge of the grid adds one more point beyond it
    (same ratio as the last step) and the sweep goes on, up to that many times; points already run
    come back at once from their trial folders.

    Args:
        config: what to search; `config.base` is the run template.
        log: where progress lines go.
    """
    require_tracker(config.base)  # so is a missing tracking extra or an unreachable store
    storage_url(config)  # a storage that cannot work is one line now, not after loading the data
    questions = questions_per_trial(config)
    # With --report-to mlflow the trials' runs are nested under the sweep's own run.
    with sweep_run(config.base, config.folder, {"sampler": config.sampler, **search_space(config)}) as tracked:
        config = dataclasses.replace(config, base=config.base.replace(tracking_parent=tracked.run_id))
        summary = _run_grid(config, questions, log)
        for _ in range(config.extend_edges if config.sampler == "grid" else 0):
            lrs = extended_lrs(config.learning_rates, summary["best"])
            if lrs is None:
                break
            log(f"sweep {config.base.method}: the best lr is on the grid's edge; extending the grid to {lrs}")
            config = dataclasses.replace(config, lrs=lrs)
            summary = _run_grid(config, questions, log)
        tracked.record_best(summary)
    for warning in summary["edge_warnings"]:
        log(f"warning: {warning}")
    return summary


def extended_lrs(lrs: list[float], best: dict[str, Any] | None) -> list[float] | None:
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
    from peftqa.hardware import visible_gpus
    from peftqa.workers import plan_slots, worker_count

    rungs = plan_rungs(config, questions, log)
    study = open_study(config, rungs=rungs)
    with folder_lock(config) as alone:
        _queue_untried_points(study, config)
        todo = prepare_resume(study, config, alone)
        # No more workers than trials left (each then gets more threads); a single one runs in this process.
        workers = min(worker_count(config.workers, config.workers_per_gpu, len(visible_gpus())), max(1, todo))
        slots = plan_slots(workers, config.workers_per_gpu) if workers > 1 else []
        log(
            f"sweep {config.base.method}: {todo} trial(s) to run ({config.sampler}: {search_space(config)}), "
            f"{questions} train questions x {config.epochs:g} epoch(s) = {rungs.total} steps, "
            f"judged on {config.eval_limit or 'all'} held-out training questions (whole articles, never dev) "
            f"at steps {', '.join(map(str, rungs.steps()))}"
            + (" (successive halving)" if config.prune else "")
            + (f"; {len(slots)} workers" if len(slots) > 1 else "")
        )
        failures: list[str] = []
        if todo and len(slots) > 1:
            failures = _run_workers(config, questions, rungs, slots, log)
        elif todo:
            work(config, questions, rungs, log)
    summary = summarize(study, config, questions, rungs)
    write_sweep(config.folder, summary)
    left = plan_trials(study, config).todo
    if left:
        raise PeftqaError(
            f"sweep {config.folder}: {left} trial(s) not finished ({'; '.join(failures) or 'workers stopped'}); "
            "run the same command again to resume"
        )
    best = summary["best"]
    if best:
        log(f"best: {best['params']} F1 {best['f1']:.2f} EM {best['exact_match']:.2f} ({best['run_dir']})")
    return summary


def _run_workers(
    config: SweepConfig, questions: int, rungs: Rungs, slots: list, log: Callable[[str], None]
) -> list[str]:
    """K worker processes on the study; returns one line per worker that failed or died (a dead
    worker's trial is run again by the others once its heartbeat is older than the grace period).
    The trials' data is already tokenised (plan_rungs), so the workers read it from the cache."""
    from peftqa.workers import Job, run_jobs

    jobs = [Job(f"worker {slot.index}", _work_in_process, (config, questions, rungs, slot.index)) for slot in slots]
    outcomes = run_jobs(jobs, slots, config.folder / "workers", say=log)
    return [f"{o.label}: {o.error}" for o in outcomes if not o.ok]


def _queue_untried_points(study: Any, config: SweepConfig) -> None:
    """In a study that already has trials (resumed, or its grid extended or changed: the study outlives a
    changed grid, so pruned points stay pruned), the points no trial took are queued in `grid_points`'
    order: the grid sampler hands points out by trial number, and the first numbers may have gone to
    another grid. An empty study is left to the sampler, so commands starting together on it cannot
    queue a point twice (later, a point queued twice makes its later trial give way: `duplicate_of`)."""
    trials = study.get_trials(deepcopy=False)
    if config.sampler != "grid" or not trials:
        return
    taken = {_trial_point(trial) for trial in trials}
    for params in grid_points(search_space(config)):
        if grid_point(params) not in taken:
            study.enqueue_trial(params)
