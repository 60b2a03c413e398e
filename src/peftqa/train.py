"""`train(config) -> metrics`: one training loop for every method.

Phases: data and model -> features (`prepare`) -> the seeded model with its method -> resume if asked
-> epochs of length-grouped, padded batches (`batches`; losses read at read points, `meter`) -> per
epoch: the scored questions' loss, EM, F1 and a checkpoint -> weights, metrics.json, predictions.json,
loss curve. `TrainHooks` let a caller watch the run without touching the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa import files, runs
from peftqa.backbone import load_tokenizer, resolve_model
from peftqa.batches import DeviceFeatures, collate, forward_inputs, length_grouped_batches, pad_to_width, uses_sdpa
from peftqa.checkpoint import (
    CHECKPOINT_DIR,
    LastEvaluation,
    Progress,
    check_same_data,
    check_same_settings,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from peftqa.config import RunConfig
from peftqa.errors import PeftqaError
from peftqa.hardware import peak_memory_mb, pick_device, reset_peak_memory
from peftqa.levers import SpeedLevers
from peftqa.meter import Meter
from peftqa.methods import MethodSpec, get_method
from peftqa.parallel import Parallel, init_parallel
from peftqa.plots import plot_loss_curve
from peftqa.predict import autocast_for, evaluate, model_device
from peftqa.prepare import TrainingData, build_model, build_optimizer, default_output_dir, prepare_data, run_settings


@dataclass
class TrainingState:
    """One run's training state, passed along the loop's phases instead of a dozen arguments."""

    config: RunConfig
    method: MethodSpec
    run_dir: Path
    data: TrainingData
    pad_id: int
    model: Any
    optimizer: Any
    scheduler: Any
    parallel: Parallel
    steps_per_epoch: int
    total_steps: int
    log: Callable[[str], None]
    hooks: TrainHooks
    levers: SpeedLevers
    progress: Progress = field(default_factory=Progress)

    def checkpoint(self) -> None:
        if self.parallel.main:
            save_checkpoint(self.run_dir, self.model, self.optimizer, self.scheduler, self.progress, self.method)


@dataclass(frozen=True)
class TrainHooks:
    """What a caller (a sweep, a benchmark, a test) is told while a run trains; every hook is optional.

    Hooks run on the host between steps and read nothing from the device; one that reads (a tensor's
    value) makes the host wait for the device there.
    """

    # With the run's questions and features, once they are ready (before the model is built).
    after_prepare: Callable[[TrainingData], None] | None = None
    # With the training state after each optimiser step (progress.step counts it; its loss is still
    # on the device).
    after_step: Callable[[TrainingState], None] | None = None
    # With each epoch's history entry once it is scored, before its checkpoint; an exception it raises
    # stops the run there (the sweep prunes trials this way).
    after_epoch: Callable[[dict[str, Any]], None] | None = None


def train(
    config: RunConfig, resume: bool = False, log: Callable[[str], None] = print, hooks: TrainHooks | None = None
) -> dict[str, Any]:
    """Train, evaluate and export one run; returns its metrics (also written to metrics.json).

    Args:
        config: the run's settings.
        resume: continue from the run directory's checkpoint when there is one.
        log: where progress lines go.
        hooks: callbacks told of the run's data, steps and epochs (see TrainHooks).
    """
    hooks = hooks or TrainHooks()
    spec = get_method(config.method)
    run_dir = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    if resume:
        check_same_settings(run_dir, config)
    if (run_dir / runs.METRICS_JSON).is_file() and resume:
        log(f"{run_dir} is already complete; nothing to resume")
        return files.read_json(run_dir / runs.METRICS_JSON)
    if (run_dir / runs.METRICS_JSON).is_file() or ((run_dir / CHECKPOINT_DIR).is_dir() and not resume):
        raise PeftqaError(f"{run_dir} already holds a run; pass --resume or choose another --output-dir")
    # No mkdir here: the folder appears with run.json, once data and model have loaded, so a run
    # that fails on bad input leaves no empty run directory behind.
    parallel = init_parallel()
    log = log if parallel.main else (lambda _line: None)  # one process speaks and writes for all

    device = pick_device()
    reset_peak_memory(device)
    base_path = resolve_model(config.model)
    tokenizer = load_tokenizer(base_path)
    with parallel.main_first():  # the main process builds and caches the features, the others read them
        data = prepare_data(config, tokenizer, log)
    if resume:
        check_same_data(run_dir, data.data_files)
    if hooks.after_prepare is not None:
        hooks.after_prepare(data)
    levers = SpeedLevers.resolve(config, device, log)
    model, parameters = build_model(config, spec, base_path, device, log)  # before run.json: a method may refuse
    if parallel.main:
        files.write_json_atomic(run_dir / runs.RUN_JSON, run_settings(config, base_path, data, device, levers))

    steps_per_epoch = math.ceil(len(data.train_features) / config.batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    optimizer, scheduler = build_optimizer(model, config, total_steps)
    state = TrainingState(
        config=config,
        method=spec,
        run_dir=run_dir,
        data=data,
        pad_id=tokenizer.pad_token_id,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        parallel=parallel,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        log=log,
        hooks=hooks,
        levers=levers,
    )
    if resume:
        restored = load_checkpoint(run_dir, model, optimizer, scheduler, spec)
        if restored is not None:
            state.progress = restored
            log(f"resumed from step {restored.step} of {total_steps}")

    _fit(state)
    if not parallel.main:
        return state.progress.history[-1]  # the same scores as the main process: every rank evaluates them all
    return _finish(state, tokenizer, parameters)


def _fit(state: TrainingState) -> None:
    """The loop: micro-batch -> loss -> clip -> step, a checkpoint every so often, eval per epoch.

    Nothing in a step reads from the device: losses and token counts stay there (`Meter`) and are
    read every `log_every_steps` steps, before a checkpoint and at the end of an epoch.
    """
    config, progress, features, parallel = state.config, state.progress, state.data.train_features, state.parallel
    device = model_device(state.model)
    trainable = [p for p in state.model.parameters() if p.requires_grad]
    forward = parallel.wrap(state.model)
    source = DeviceFeatures(features, state.pad_id, device) if config.device_batches == "on" else None
    sdpa = uses_sdpa(state.model)
    method_step, after_step = state.method.after_optimizer_step, state.hooks.after_step
    bar = tqdm(
        total=state.total_steps,
        initial=progress.step,
        desc=f"train {config.method}",
        unit="step",
        disable=not parallel.main,  # one progress bar, not one per process
    )
    meter = Meter(progress, parallel, device, bar)
    while progress.step < state.total_steps:
        epoch, step_in_epoch = divmod(progress.step, state.steps_per_epoch)
        # Batch order depends only on (seed, epoch): a resumed run sees the same batches.
        batches = length_grouped_batches(features.lengths, config.batch_size, config.seed * 1000 + epoch)
        batches = batches[step_in_epoch:]
        shards = [parallel.shard(rows) for rows in batches]
        device_rows = source.upload_rows([local for local, _ in shards]) if source is not None else []
        forward.train()
        meter.start(epoch)
        with state.levers.training(state.model):
            for i, rows in enumerate(batches):
                local_rows, weight = shards[i]
                # Widths come from the host's lengths: every rank pads as wide as the global batch
                # (see batches.pad_to_width), and whether a shard has padding needs no device read.
                width = int(features.lengths[rows].max())
                if source is not None:
                    batch = source.batch(device_rows[i], width)
                else:
                    batch = collate(features, local_rows, state.pad_id, device)
                    if parallel.world > 1:
                        batch = pad_to_width(batch, width, state.pad_id)
                padded = bool(features.lengths[local_rows].min() < width)
                with autocast_for(device, state.levers.autocast):
                    loss = forward(**forward_inputs(batch, padded, sdpa)).loss
                (loss * weight if weight != 1.0 else loss).backward()
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                state.optimizer.step()
                state.scheduler.step()
                if method_step is not None:  # before the gradients are cleared: the method may read them
                    method_step(state.model, progress.step, state.total_steps)
                state.optimizer.zero_grad(set_to_none=True)
                progress.step += 1
                progress.train_features_seen += len(rows)
                # A weightless row (fewer rows than ranks) counts for nothing.
                meter.add(loss, batch["attention_mask"], len(local_rows) if weight else 0, len(rows))
                if after_step is not None:
                    after_step(state)
                if progress.step % state.steps_per_epoch == 0 or progress.step >= state.total_steps:
                    break
                if progress.step % config.checkpoint_every_steps == 0:
                    meter.read()  # the checkpoint holds every step's loss
                    state.checkpoint()
                    meter.start(epoch)
                elif progress.step % config.log_every_steps == 0:
                    meter.read()
        meter.read()
        _end_epoch(state, epoch)
        if state.hooks.after_epoch is not None:
            state.hooks.after_epoch(progress.history[-1])
        state.checkpoint()
    bar.close()


def _end_epoch(state: TrainingState, epoch: int) -> None:
    """Score the held-out questions, and add the epoch's losses and scores to the history."""
    progress, data = state.progress, state.data
    result = evaluate(
        state.model, data.eval_examples, data.eval_features, state.pad_id, state.config.scoring, data.null_rule
    )
    # A resumed epoch only ran part of its steps in this process; the step losses hold the whole epoch.
    epoch_losses = progress.step_losses[epoch * state.steps_per_epoch : progress.step]
    entry = {
        "epoch": epoch + 1,
        "step": progress.step,
        "train_loss": float(np.mean(epoch_losses)),
        "eval_loss": result.loss,
        "exact_match": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
    }
    progress.history.append(entry)
    progress.last_eval = LastEvaluation.of(result)
    state.log(
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, {state.config.eval_split} loss "
        f"{entry['eval_loss']:.4f}, EM {entry['exact_match']:.2f}, F1 {entry['f1']:.2f} "
        f"[{result.metrics['f1_ci'][0]:.2f}, {result.metrics['f1_ci'][1]:.2f}]"
        + (f", null threshold {result.answerability['null_threshold']:.3f}" if result.answerability else "")
    )


def _finish(state: TrainingState, tokenizer: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """Export the weights and tokenizer, then the metrics and predictions of the last evaluation."""
    config, data, progress, run_dir, spec = state.config, state.data, state.progress, state.run_dir, state.method
    last, last_eval = progress.history[-1], progress.last_eval
    assert last_eval is not None  # every epoch ends scored
    spec.save(state.model, run_dir)
    tokenizer.save_pretrained(run_dir / runs.TOKENIZER_DIR)
    artifact_bytes = sum(f.stat().st_size for f in (run_dir / spec.artifact).rglob("*") if f.is_file())
    metrics = {
        "method": config.method,
        "model": config.model,
        "exact_match": last["exact_match"],
        "f1": last["f1"],
        # 95% bootstrap intervals over the scored questions (scores.jsonl holds each question's score).
        "exact_match_ci": last_eval.intervals["exact_match"],
        "f1_ci": last_eval.intervals["f1"],
        "eval_split": config.eval_split,
        "eval_loss": last["eval_loss"],  # on the scored questions: dev, or the held-out ones (eval_split)
        "eval_questions": len(data.eval_examples),
        **last_eval.answerability,  # SQuAD 2.0 data: null_threshold and the official HasAns/NoAns/best figures
        "seed": config.seed,
        **parameters,
        "artifact_bytes": artifact_bytes,
        **progress.throughput(),
        "eval_seconds": last_eval.seconds,
        "eval_features_per_second": last_eval.features_per_second,
        "tokenize_seconds": data.tokenize_seconds,
        "peak_memory_mb": peak_memory_mb(model_device(state.model)),
        "steps": progress.step,
        "history": progress.history,
    }
    files.write_json_atomic(run_dir / runs.PREDICTIONS_JSON, last_eval.predictions)
    runs.write_scores(run_dir / runs.SCORES_JSONL, last_eval.score_rows(data.eval_examples))
    plot_loss_curve(progress.history, progress.step_losses, run_dir / runs.LOSS_CURVE, run_dir.name, config.eval_split)
    # metrics.json last: its presence means the run is complete.
    files.write_json_atomic(run_dir / runs.METRICS_JSON, metrics)
    remove_checkpoint(run_dir)
    state.log(f"done: EM {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}; run directory {run_dir}")
    return metrics
