"""A study's final runs: the best trial of each sweep is one already (its trials are final runs at each
learning rate: the same questions, epochs and dev questions, judged on held-out articles), so its folder
is copied to runs/<name>; runs with further seeds are trained at its settings, one at a time or K at a
time in worker processes (peftqa.workers)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.settings.run_config import RunConfig
from peftqa.training.checkpoint import check_same_settings


def trial_settings(summary: dict[str, Any]) -> RunConfig:
    """The settings the sweep's best trial was trained with (its run.json)."""
    trial = Path(summary["best"]["run_dir"])
    return RunConfig.from_dict(files.read_json(trial / run_folder.RUN_JSON)["config"])


def adopt_best_trial(summary: dict[str, Any], run_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """runs/<name>: a copy of the sweep's best trial, which was scored on dev once, at its end; returns
    its metrics. A folder already there is kept only if it holds a run with the same settings: a changed
    best learning rate must not silently leave the run of the old one."""
    trial = Path(summary["best"]["run_dir"])
    settings = trial_settings(summary)
    if (run_dir / run_folder.METRICS_JSON).is_file():
        check_same_settings(run_dir, settings)
        log(f"{run_dir} already holds the best trial's run")
        return files.read_json(run_dir / run_folder.METRICS_JSON)
    if run_dir.exists():
        raise PeftqaError(f"{run_dir} holds an unfinished run: remove it, and the study copies the best trial there")
    if not (trial / run_folder.METRICS_JSON).is_file():
        raise PeftqaError(f"{trial}: the best trial's run is not complete (its metrics.json is missing)")
    staging = run_dir.with_name(f".{run_dir.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trial, staging)
    recorded = files.read_json(staging / run_folder.RUN_JSON)
    recorded["final_run_of"] = {"sweep": str(trial.parent.parent), "trial": str(trial)}
    files.write_json_atomic(staging / run_folder.RUN_JSON, recorded)
    staging.rename(run_dir)
    metrics = files.read_json(run_dir / run_folder.METRICS_JSON)
    log(f"final run: {trial} (lr {settings.learning_rate:g}) -> {run_dir}: dev F1 {metrics['f1']:.2f}")
    return metrics


def seed_config(summary: dict[str, Any], seed: int, run_dir: Path) -> RunConfig:
    """The best trial's settings with another seed (another sample of the training questions, another
    initialisation and batch order), in `run_dir`; scored on the same dev questions (eval_seed), so paired."""
    return RunConfig.from_dict({**trial_settings(summary).to_dict(), "seed": seed, "output_dir": str(run_dir)})


def _train_one(config: RunConfig, log: Callable[[str], None], say: Callable[[str], None]) -> dict[str, Any]:
    """One final run in a worker process: its lines go to its log, one line to the console."""
    from peftqa.training.loop import train

    began = time.perf_counter()
    metrics = train(config, resume=True, log=log)
    seconds = time.perf_counter() - began
    say(f"F1 {metrics['f1']:.2f} EM {metrics['exact_match']:.2f} in {seconds:.0f} s: {config.output_dir}")
    return metrics


def train_in_workers(
    queued: list[RunConfig], slots: list, log_dir: Path, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The final runs, len(slots) at a time; their metrics in the queued order."""
    from peftqa.model.backbone import load_tokenizer, resolve_model
    from peftqa.training.loop import train
    from peftqa.training.prepare import prepare_data
    from peftqa.workers import Job, run_jobs

    metrics: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for index, config in enumerate(queued):
        if (Path(str(config.output_dir)) / run_folder.METRICS_JSON).is_file():
            metrics[index] = train(config, resume=True, log=log)  # finished earlier: read back, not retrained
            continue
        # The model fetched and the data tokenised here, once, before the workers would all do it at
        # once (runs that share their data find it in the feature cache).
        prepare_data(config, load_tokenizer(resolve_model(config.model)), log)
        todo.append(index)
    jobs = [Job(Path(str(queued[i].output_dir)).name, _train_one, (queued[i],)) for i in todo]
    outcomes = run_jobs(jobs, slots, log_dir, say=log)
    failed = [f"{o.label}: {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise PeftqaError(f"final run(s) failed ({'; '.join(failed)}); run the same command again to resume")
    metrics.update({index: outcome.value for index, outcome in zip(todo, outcomes, strict=True)})
    return [metrics[i] for i in range(len(queued))]
