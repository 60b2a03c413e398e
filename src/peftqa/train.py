"""`train(config) -> metrics`: one training loop for every method.

Phases, in order: resolve data and model -> build (or load cached) features -> seed, build the
model, apply the method -> resume from a checkpoint if asked -> epochs of length-grouped,
dynamically padded batches (loss and throughput on the progress bar) -> per epoch: dev loss,
EM, F1 and a checkpoint -> final export, metrics.json, predictions.json, loss curve.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa import runs
from peftqa.backbone import load_qa_model, load_tokenizer, resolve_model
from peftqa.checkpoint import (
    CHECKPOINT_DIR,
    check_same_settings,
    load_checkpoint,
    peak_memory_mb,
    remove_checkpoint,
    reset_peak_memory,
    save_checkpoint,
)
from peftqa.config import RunConfig
from peftqa.data import Example, eval_questions, md5_of, split_path, train_questions
from peftqa.errors import PeftqaError
from peftqa.features import FeatureSet, load_or_build_features
from peftqa.methods import MethodSpec, get_method
from peftqa.parallel import Parallel, init_parallel, widen
from peftqa.predict import autocast_for, collate, evaluate, model_device


@dataclass
class Prepared:
    """What a run trains and scores on."""

    train_examples: list[Example]
    eval_examples: list[Example]  # the questions scored: dev, or held-out training articles (config.eval_split)
    train_features: FeatureSet
    eval_features: FeatureSet
    data_md5: dict[str, str]
    tokenize_seconds: float
    features_from_cache: bool


def default_output_dir(config: RunConfig) -> Path:
    model_name = Path(config.model).name or "model"
    return Path("runs") / f"{config.method}-{model_name}-{datetime.now():%Y%m%d-%H%M%S}"


def prepare_data(config: RunConfig, tokenizer: Any, log: Callable[[str], None] = print) -> Prepared:
    """Choose the training and scored questions (config.questions) and build (or load) their features."""
    choice = config.questions
    train_path = split_path(config.data_dir, "train")
    # A seeded random sample: the first N questions would cover only the first few articles.
    train_examples = train_questions(config.data_dir, choice)
    eval_examples, eval_path = eval_questions(config.data_dir, choice)
    data_md5 = {"train": md5_of(train_path), choice.eval_split: md5_of(eval_path)}
    began = time.perf_counter()
    train_features, train_cached = load_or_build_features(
        train_examples, tokenizer, config.max_length, config.doc_stride, data_md5["train"]
    )
    eval_features, eval_cached = load_or_build_features(
        eval_examples, tokenizer, config.max_length, config.doc_stride, data_md5[choice.eval_split]
    )
    seconds = time.perf_counter() - began
    log(
        f"data: {len(train_examples)} train questions -> {len(train_features)} features, scored on "
        f"{choice.describe(len(eval_examples))} -> {len(eval_features)} features "
        f"({'from cache' if train_cached and eval_cached else 'tokenised'} in {seconds:.1f} s)"
    )
    return Prepared(
        train_examples, eval_examples, train_features, eval_features, data_md5, seconds, train_cached and eval_cached
    )


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows: random order, little padding.

    Rows are shuffled, cut into mega-batches of 50 batches, sorted by length inside each, split
    into batches, and the batches shuffled again. The same seed gives the same batches.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches: list[np.ndarray] = []
    for first in range(0, len(order), mega):
        chunk = order[first : first + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_optimizer(model: torch.nn.Module, config: RunConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW without decay on biases and LayerNorm; linear warm-up then linear decay to zero."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused AdamW (one kernel for every tensor) exists for CUDA and CPU; without it PyTorch loops over
    # the tensors on a CPU: MiniLM-L6 full fine-tuning, 22.6M weights, 105-137 ms -> 19-21 ms per step.
    use_fused = model_device(model).type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=use_fused or None)
    warmup = int(config.warmup_fraction * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def count_parameters(model: torch.nn.Module) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total,
    }


def _settings(config: RunConfig, base_path: str, prepared: Prepared, device: torch.device) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "learning_rate": config.learning_rate,
        "base_model_path": base_path,
        "data_md5": prepared.data_md5,
        "train_questions": len(prepared.train_examples),
        "train_features": len(prepared.train_features),
        "dev_questions": len(prepared.eval_examples),
        "dev_features": len(prepared.eval_features),
        # Which questions every figure of this run is computed on, in words and as a fingerprint.
        "eval_questions": config.questions.describe(len(prepared.eval_examples)),
        "eval_ids_sha256": hashlib.sha256("\n".join(e.id for e in prepared.eval_examples).encode()).hexdigest(),
        "versions": runs.package_versions(),
        "git_commit": runs.git_commit(),
        "device": runs.device_description(device),
        "started": datetime.now().isoformat(timespec="seconds"),
    }


def train(
    config: RunConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and export one run; returns its metrics (also written to metrics.json).

    Args:
        config: the run's settings.
        resume: continue from the run directory's checkpoint when there is one.
        log: where progress lines go.
        on_epoch: called with each epoch's scores (epoch, step, losses, EM, F1) once dev is scored;
            an exception it raises stops the run there (the sweep prunes trials this way).
    """
    spec = get_method(config.method)
    run_dir = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    if resume:
        check_same_settings(run_dir, config)
    if (run_dir / runs.METRICS_JSON).is_file() and resume:
        log(f"{run_dir} is already complete; nothing to resume")
        return runs.read_json(run_dir / runs.METRICS_JSON)
    if (run_dir / runs.METRICS_JSON).is_file() or ((run_dir / CHECKPOINT_DIR).is_dir() and not resume):
        raise PeftqaError(f"{run_dir} already holds a run; pass --resume or choose another --output-dir")
    # No mkdir here: the folder appears with run.json, once data and model have loaded, so a run
    # that fails on bad input leaves no empty run directory behind.
    parallel = init_parallel()
    log = log if parallel.main else _quiet  # one process speaks and writes for all

    device = pick_device()
    reset_peak_memory(device)
    base_path = resolve_model(config.model)
    tokenizer = load_tokenizer(base_path)
    with parallel.main_first():  # the main process builds and caches the features, the others read them
        prepared = prepare_data(config, tokenizer, log)
    if parallel.main:
        runs.write_json_atomic(run_dir / runs.RUN_JSON, _settings(config, base_path, prepared, device))

    seed_everything(config.seed)
    model = spec.apply(load_qa_model(base_path, config.dropout), spec.make_options(config.method_options)).to(device)
    parameters = count_parameters(model)
    log(
        f"{config.method} on {config.model}: {parameters['trainable_params']:,} trainable of "
        f"{parameters['total_params']:,} parameters ({parameters['trainable_percent']:.2f}%), "
        f"lr {config.learning_rate:g}"
    )

    steps_per_epoch = math.ceil(len(prepared.train_features) / config.batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    optimizer, scheduler = build_optimizer(model, config, total_steps)
    loop = _Loop(
        config=config,
        run_dir=run_dir,
        prepared=prepared,
        pad_id=tokenizer.pad_token_id,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        parallel=parallel,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        log=log,
        on_epoch=on_epoch or _ignore,
    )
    if resume:
        restored = load_checkpoint(run_dir, model, optimizer, scheduler)
        if restored is not None:
            loop.progress = restored
            log(f"resumed from step {loop.progress['step']} of {total_steps}")

    _fit(loop)
    if not parallel.main:
        return loop.progress["history"][-1]  # the same scores as the main process: every rank evaluates all of dev
    return _finish(loop, spec, tokenizer, parameters)


def _new_progress() -> dict[str, Any]:
    """What the loop has done so far: saved in every checkpoint, so a resumed run carries on from it."""
    return {
        "step": 0,
        "history": [],  # one entry per epoch: losses, EM, F1
        "step_losses": [],  # training loss of every optimiser step
        "train_seconds": 0.0,
        "train_features_seen": 0,
        "train_tokens_seen": 0,
    }


@dataclass
class _Loop:
    """One run's training state, passed along the loop's phases instead of a dozen arguments."""

    config: RunConfig
    run_dir: Path
    prepared: Prepared
    pad_id: int
    model: Any
    optimizer: Any
    scheduler: Any
    parallel: Parallel
    steps_per_epoch: int
    total_steps: int
    log: Callable[[str], None]
    on_epoch: Callable[[dict[str, Any]], None]
    progress: dict[str, Any] = field(default_factory=_new_progress)

    def checkpoint(self) -> None:
        if self.parallel.main:
            save_checkpoint(self.run_dir, self.model, self.optimizer, self.scheduler, self.progress)


def _ignore(_entry: dict[str, Any]) -> None:
    return None


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    pass


def _fit(loop: _Loop) -> None:
    """The loop: micro-batch -> loss -> clip -> step, a checkpoint every so often, eval per epoch."""
    config, progress, features, parallel = loop.config, loop.progress, loop.prepared.train_features, loop.parallel
    device = model_device(loop.model)
    trainable = [p for p in loop.model.parameters() if p.requires_grad]
    forward = parallel.wrap(loop.model)
    bar = tqdm(
        total=loop.total_steps,
        initial=progress["step"],
        desc=f"train {config.method}",
        unit="step",
        disable=not parallel.main,  # one progress bar, not one per process
    )
    while progress["step"] < loop.total_steps:
        epoch, step_in_epoch = divmod(progress["step"], loop.steps_per_epoch)
        # Batch order depends only on (seed, epoch): a resumed run sees the same batches.
        batches = length_grouped_batches(features.lengths, config.batch_size, config.seed * 1000 + epoch)
        forward.train()
        for rows in batches[step_in_epoch:]:
            began = time.perf_counter()
            local_rows, weight = parallel.shard(rows)
            batch = collate(features, local_rows, loop.pad_id, device)
            if parallel.world > 1:
                batch = widen(batch, int(features.lengths[rows].max()), loop.pad_id)
            with autocast_for(device):
                loss = forward(**batch).loss
            (loss * weight if weight != 1.0 else loss).backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            loop.optimizer.step()
            loop.scheduler.step()
            loop.optimizer.zero_grad(set_to_none=True)
            progress["step"] += 1
            progress["train_seconds"] += time.perf_counter() - began
            progress["train_features_seen"] += len(rows)
            local_count = len(local_rows) if weight else 0  # a weightless row counts for nothing
            local_tokens = int(batch["attention_mask"].sum()) if weight else 0
            loss_sum, tokens = parallel.sum([loss.item() * local_count, local_tokens])
            progress["train_tokens_seen"] += int(tokens)
            loss_value = loss_sum / len(rows)
            progress["step_losses"].append(loss_value)
            rate = progress["train_features_seen"] / max(progress["train_seconds"], 1e-9)
            bar.set_postfix(loss=f"{loss_value:.3f}", feats_per_s=f"{rate:.1f}", epoch=epoch + 1)
            bar.update(1)
            if progress["step"] % loop.steps_per_epoch == 0 or progress["step"] >= loop.total_steps:
                break
            if progress["step"] % config.checkpoint_every_steps == 0:
                loop.checkpoint()
        _end_epoch(loop, epoch)
        loop.on_epoch(progress["history"][-1])
        loop.checkpoint()
    bar.close()


def _end_epoch(loop: _Loop, epoch: int) -> None:
    """Score dev, and add the epoch's losses and scores to the history."""
    progress, prepared = loop.progress, loop.prepared
    result = evaluate(loop.model, prepared.eval_examples, prepared.eval_features, loop.pad_id, loop.config.scoring)
    # A resumed epoch only ran part of its steps in this process; the step losses hold the whole epoch.
    epoch_losses = progress["step_losses"][epoch * loop.steps_per_epoch : progress["step"]]
    entry = {
        "epoch": epoch + 1,
        "step": progress["step"],
        "train_loss": float(np.mean(epoch_losses)),
        "dev_loss": result.loss,
        "exact_match": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
    }
    progress["history"].append(entry)
    progress["last_eval"] = {
        "predictions": result.predictions,
        "scores": result.scores,
        "intervals": {name: result.metrics[f"{name}_ci"] for name in ("exact_match", "f1")},
        "seconds": result.seconds,
        "features_per_second": result.features_per_second,
    }
    loop.log(
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, {loop.config.eval_split} loss "
        f"{entry['dev_loss']:.4f}, EM {entry['exact_match']:.2f}, F1 {entry['f1']:.2f} "
        f"[{result.metrics['f1_ci'][0]:.2f}, {result.metrics['f1_ci'][1]:.2f}]"
    )


def _score_rows(examples: list[Example], last_eval: dict[str, Any]) -> list[dict[str, Any]]:
    scores, predictions = last_eval["scores"], last_eval["predictions"]
    return [{"id": e.id, "title": e.title, **scores[e.id], "prediction": predictions.get(e.id, "")} for e in examples]


def _finish(loop: _Loop, spec: MethodSpec, tokenizer: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """Export the weights and tokenizer, then the metrics and predictions of the last evaluation."""
    from peftqa.report_plots import plot_loss_curve

    config, prepared, progress, run_dir = loop.config, loop.prepared, loop.progress, loop.run_dir
    spec.save(loop.model, run_dir)
    tokenizer.save_pretrained(run_dir / runs.TOKENIZER_DIR)
    last = progress["history"][-1]
    artifact_bytes = sum(f.stat().st_size for f in (run_dir / spec.artifact).rglob("*") if f.is_file())
    train_seconds = max(progress["train_seconds"], 1e-9)
    metrics = {
        "method": config.method,
        "model": config.model,
        "exact_match": last["exact_match"],
        "f1": last["f1"],
        # 95% bootstrap intervals over the scored questions (scores.jsonl holds each question's score).
        "exact_match_ci": progress["last_eval"]["intervals"]["exact_match"],
        "f1_ci": progress["last_eval"]["intervals"]["f1"],
        "eval_split": config.eval_split,
        "dev_loss": last["dev_loss"],  # on the scored questions: dev, or the held-out ones (eval_split)
        "dev_questions": len(prepared.eval_examples),
        "seed": config.seed,
        **parameters,
        "artifact_bytes": artifact_bytes,
        "train_seconds": progress["train_seconds"],
        "train_features_per_second": progress["train_features_seen"] / train_seconds,
        "train_tokens_per_second": progress["train_tokens_seen"] / train_seconds,
        "eval_seconds": progress["last_eval"]["seconds"],
        "eval_features_per_second": progress["last_eval"]["features_per_second"],
        "tokenize_seconds": prepared.tokenize_seconds,
        "peak_memory_mb": peak_memory_mb(model_device(loop.model)),
        "steps": progress["step"],
        "history": progress["history"],
    }
    runs.write_json_atomic(run_dir / runs.PREDICTIONS_JSON, progress["last_eval"]["predictions"])
    runs.write_scores(run_dir / runs.SCORES_JSONL, _score_rows(prepared.eval_examples, progress["last_eval"]))
    plot_loss_curve(progress["history"], progress["step_losses"], run_dir / runs.LOSS_CURVE, title=run_dir.name)
    # metrics.json last: its presence means the run is complete.
    runs.write_json_atomic(run_dir / runs.METRICS_JSON, metrics)
    remove_checkpoint(run_dir)
    loop.log(f"done: EM {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}; run directory {run_dir}")
    return metrics
