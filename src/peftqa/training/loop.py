"""`train(config) -> metrics`: one training loop for every method.

Phases: data and model -> features (`prepare`) -> the seeded model with its method -> resume if asked
-> epochs of length-grouped, padded batches (`batches`; losses read at read points, `meter`) -> per
epoch: the scored questions' loss, EM, F1 and a checkpoint -> weights, metrics.json, predictions.json,
loss curve. `TrainHooks` (peftqa.training.hooks) let a caller watch the run without touching the loop; held-out
evaluation with early stopping (`early_stopping`) and live tracking (`tracking`) watch it through them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa import files
from peftqa.features.batches import (
    DeviceFeatures,
    collate,
    forward_inputs,
    length_grouped_batches,
    pad_to_width,
    uses_sdpa,
)
from peftqa.hardware import peak_memory_mb, pick_device, reset_peak_memory
from peftqa.inference import run_files, run_folder
from peftqa.inference.evaluate import evaluate
from peftqa.inference.forward import autocast_for, model_device
from peftqa.methods import get_method
from peftqa.model.backbone import load_tokenizer, resolve_model
from peftqa.plots import plot_loss_curve
from peftqa.settings.run_config import RunConfig
from peftqa.training.checkpoint import (
    LastEvaluation,
    check_same_data,
    check_same_settings,
    load_checkpoint,
    remove_checkpoint,
)
from peftqa.training.early_stopping import Validation, scored_while_training
from peftqa.training.hooks import TrainHooks, TrainingState, chain_hooks
from peftqa.training.levers import SpeedLevers
from peftqa.training.meter import Meter
from peftqa.training.output_dir import check_output_dir
from peftqa.training.parallel import init_parallel
from peftqa.training.prepare import build_model, build_optimizer, default_output_dir, prepare_data, run_settings
from peftqa.training.tracking import require_tracker, tracked

__all__ = ["TrainHooks", "TrainingState", "train"]  # callers import the hooks from here


def train(
    config: RunConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    hooks: TrainHooks | None = None,
    loss_curve: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and export one run; returns its metrics (also written to metrics.json).

    Args:
        config: the run's settings.
        resume: continue from the run directory's checkpoint when there is one.
        log: where progress lines go.
        hooks: callbacks told of the run's data, steps and epochs (see TrainHooks).
        loss_curve: draw loss_curve.png in the run directory (matplotlib); a caller that only wants the
            metrics (a benchmark, on a machine without matplotlib) may leave it out.
        force: write the run into an --output-dir that holds other files (see output_dir.check_output_dir).
    """
    hooks = hooks or TrainHooks()
    require_tracker(config)  # a missing extra or an unreachable store is one line now, before any data loads
    spec = get_method(config.method)
    run_dir = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    check_output_dir(run_dir, resume, force)
    if resume:
        check_same_settings(run_dir, config)
    if (run_dir / run_folder.METRICS_JSON).is_file() and resume:
        log(f"{run_dir} is already complete; nothing to resume")
        return run_files.read_metrics(run_dir / run_folder.METRICS_JSON)
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
        files.write_json_atomic(run_dir / run_folder.RUN_JSON, run_settings(config, base_path, data, device, levers))

    steps_per_epoch = math.ceil(len(data.train_features) / config.optimisation.batch_size)
    total_steps = config.optimisation.max_steps or max(1, math.ceil(config.optimisation.epochs * steps_per_epoch))
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
    validation = Validation(state) if config.tracking.eval_every_steps else None
    with tracked(state, resume) as tracking:
        state.hooks = chain_hooks(validation.hooks if validation else None, tracking, hooks)
        _fit(state, validation)
        # With --eval-every-steps dev is scored only now, once, with the weights kept.
        final = validation.final_scores() if validation else state.progress.history[-1]
        if not parallel.main:
            return final  # the same scores as the main process: every rank evaluates them all
        return _finish(state, tokenizer, parameters, final, validation.outcome() if validation else {}, loss_curve)


def _fit(state: TrainingState, validation: Validation | None) -> None:
    """The loop: micro-batch -> loss -> clip -> step, a checkpoint every so often, eval per epoch (and
    with `validation` on held-out articles every --eval-every-steps steps, until early stopping).

    Nothing in a step reads from the device: losses and token counts stay there (`Meter`) and are
    read every `log_every_steps` steps, before a checkpoint and evaluation and at the end of an epoch.
    """
    config, progress, features, parallel = state.config, state.progress, state.data.train_features, state.parallel
    device = model_device(state.model)
    trainable = [p for p in state.model.parameters() if p.requires_grad]
    forward = parallel.wrap(state.model)
    source = DeviceFeatures(features, state.pad_id, device) if config.speed.device_batches == "on" else None
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
    while progress.step < state.total_steps and progress.stopped_at_step is None:
        epoch, step_in_epoch = divmod(progress.step, state.steps_per_epoch)
        # Batch order depends only on (seed, epoch): a resumed run sees the same batches.
        batches = length_grouped_batches(
            features.lengths, config.optimisation.batch_size, config.optimisation.seed * 1000 + epoch
        )
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
                torch.nn.utils.clip_grad_norm_(trainable, config.optimisation.max_grad_norm)
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
                # A held-out evaluation leaves the training levers first, as every evaluation does.
                if state.at_epoch_end() or (validation is not None and validation.due()):
                    break
                if progress.step % config.tracking.checkpoint_every_steps == 0:
                    meter.read()  # the checkpoint holds every step's loss
                    state.checkpoint()
                    meter.start(epoch)
                elif progress.step % config.speed.log_every_steps == 0:
                    meter.read()
        meter.read()
        if state.at_epoch_end():
            _end_epoch(state, epoch)
            if validation is not None:
                validation.record(progress.history[-1])
            if state.hooks.after_epoch is not None:
                state.hooks.after_epoch(progress.history[-1])
        elif validation is not None:  # in the middle of the epoch: the next batches follow from here
            validation.score()
        stopped = progress.stopped_at_step is not None
        # A checkpoint step the evaluation's pause came before is still checkpointed (after it).
        if state.at_epoch_end() or stopped or progress.step % config.tracking.checkpoint_every_steps == 0:
            state.checkpoint()
    bar.close()


def _end_epoch(state: TrainingState, epoch: int) -> None:
    """Score the held-out questions (held-out training articles with --eval-every-steps, dev waiting for
    the end), and add the epoch's losses and scores to the history."""
    progress, data = state.progress, state.data
    split, examples, features = scored_while_training(state)
    result = evaluate(state.model, examples, features, state.pad_id, state.config.scoring, data.null_rule)
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
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, {split} loss "
        f"{entry['eval_loss']:.4f}, EM {entry['exact_match']:.2f}, F1 {entry['f1']:.2f} "
        f"[{result.metrics['f1_ci'][0]:.2f}, {result.metrics['f1_ci'][1]:.2f}]"
        + (f", null threshold {result.answerability['null_threshold']:.3f}" if result.answerability else "")
    )


def _finish(
    state: TrainingState,
    tokenizer: Any,
    parameters: dict[str, Any],
    last: dict[str, Any],
    validation: dict[str, Any],
    loss_curve: bool,
) -> dict[str, Any]:
    """Export the weights and tokenizer, then the metrics and predictions of the last evaluation (`last`:
    its history entry, or with --eval-every-steps dev's once training ended; `validation`: early stopping's)."""
    config, data, progress, run_dir, spec = state.config, state.data, state.progress, state.run_dir, state.method
    last_eval = progress.last_eval
    assert last_eval is not None  # every epoch ends scored
    spec.save(state.model, run_dir)
    tokenizer.save_pretrained(run_dir / run_folder.TOKENIZER_DIR)
    for saved in (run_dir / spec.artifact, run_dir / run_folder.TOKENIZER_DIR):
        files.give_usual_modes(saved)  # safetensors writes owner-only files
    artifact_bytes = sum(f.stat().st_size for f in (run_dir / spec.artifact).rglob("*") if f.is_file())
    metrics = {
        "method": config.method,
        "model": config.model,
        "exact_match": last["exact_match"],
        "f1": last["f1"],
        # 95% bootstrap intervals over the scored questions (scores.jsonl holds each question's score).
        "exact_match_ci": last_eval.intervals["exact_match"],
        "f1_ci": last_eval.intervals["f1"],
        "eval_split": config.data.eval_split,
        "eval_loss": last["eval_loss"],  # on the scored questions: dev, or the held-out ones (eval_split)
        "eval_questions": len(data.eval_examples),
        **last_eval.answerability,  # SQuAD 2.0 data: null_threshold and the official HasAns/NoAns/best figures
        "seed": config.optimisation.seed,
        **parameters,
        "artifact_bytes": artifact_bytes,
        **progress.throughput(),
        "eval_seconds": last_eval.seconds,
        "eval_features_per_second": last_eval.features_per_second,
        "tokenize_seconds": data.tokenize_seconds,
        "peak_memory_mb": peak_memory_mb(model_device(state.model)),
        "steps": progress.step,
        "history": progress.history,
        "step_losses": progress.step_losses,  # every optimiser step's training loss, as the trackers got them
        **validation,
    }
    files.write_json_atomic(run_dir / run_folder.PREDICTIONS_JSON, last_eval.predictions)
    run_folder.write_scores(run_dir / run_folder.SCORES_JSONL, last_eval.score_rows(data.eval_examples))
    if loss_curve:
        curve_split = scored_while_training(state)[0]
        plot_loss_curve(
            progress.history, progress.step_losses, run_dir / run_folder.LOSS_CURVE, run_dir.name, curve_split
        )
    if not all(math.isfinite(loss) for loss in progress.step_losses):
        state.log("warning: the training loss became NaN or infinite (the run diverged: try a lower --lr)")
    # metrics.json last: its presence means the run is complete. A diverged run's losses are null there.
    files.write_json_atomic(run_dir / run_folder.METRICS_JSON, files.finite(metrics))
    remove_checkpoint(run_dir)
    state.log(f"done: EM {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}; run directory {run_dir}")
    if state.hooks.after_finish is not None:
        state.hooks.after_finish(metrics)
    return metrics
