"""`train(config) -> metrics`: one training loop for every method.

Phases, in order: resolve data and model -> build (or load cached) features -> seed, build the
model, apply the method -> resume from a checkpoint if asked -> epochs of length-grouped,
dynamically padded batches (loss and throughput on the progress bar) -> per epoch: dev loss,
EM, F1 and a checkpoint -> final export, metrics.json, predictions.json, loss curve.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa import files, hardware, runs
from peftqa.backbone import load_qa_model, load_tokenizer, resolve_model
from peftqa.checkpoint import (
    CHECKPOINT_DIR,
    check_same_settings,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from peftqa.config import RunConfig
from peftqa.data import Example, eval_questions, md5_of, split_path, train_questions
from peftqa.device_batches import DeviceFeatures, model_inputs, uses_sdpa
from peftqa.errors import PeftqaError
from peftqa.features import FeatureSet, load_or_build_features
from peftqa.hardware import peak_memory_mb, pick_device, reset_peak_memory
from peftqa.methods import MethodSpec, get_method
from peftqa.methods.frozen_bf16 import frozen_linears_in_bf16
from peftqa.methods.fused_lora import fused_lora_forward
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
        "device": hardware.device_description(device),
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
        return files.read_json(run_dir / runs.METRICS_JSON)
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
        files.write_json_atomic(run_dir / runs.RUN_JSON, _settings(config, base_path, prepared, device))

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
    """The loop: micro-batch -> loss -> clip -> step, a checkpoint every so often, eval per epoch.

    Nothing in a step reads from the device: losses and token counts stay there (`_Meter`) and are
    read every `log_every_steps` steps, before a checkpoint and at the end of an epoch.
    """
    config, progress, features, parallel = loop.config, loop.progress, loop.prepared.train_features, loop.parallel
    device = model_device(loop.model)
    trainable = [p for p in loop.model.parameters() if p.requires_grad]
    forward = parallel.wrap(loop.model)
    levers = _Levers.resolve(loop, device)
    source = DeviceFeatures(features, loop.pad_id, device) if config.device_batches == "on" else None
    sdpa = uses_sdpa(loop.model)
    bar = tqdm(
        total=loop.total_steps,
        initial=progress["step"],
        desc=f"train {config.method}",
        unit="step",
        disable=not parallel.main,  # one progress bar, not one per process
    )
    meter = _Meter(progress, parallel, device, bar)
    while progress["step"] < loop.total_steps:
        epoch, step_in_epoch = divmod(progress["step"], loop.steps_per_epoch)
        # Batch order depends only on (seed, epoch): a resumed run sees the same batches.
        batches = length_grouped_batches(features.lengths, config.batch_size, config.seed * 1000 + epoch)
        batches = batches[step_in_epoch:]
        shards = [parallel.shard(rows) for rows in batches]
        device_rows = source.upload_rows([local for local, _ in shards]) if source is not None else []
        forward.train()
        meter.start(epoch)
        with levers.training(loop.model):
            for i, rows in enumerate(batches):
                local_rows, weight = shards[i]
                # Widths come from the host's lengths: every rank pads as wide as the global batch
                # (see parallel.widen), and whether a shard has padding needs no device read.
                width = int(features.lengths[rows].max())
                if source is not None:
                    batch = source.batch(device_rows[i], width)
                else:
                    batch = collate(features, local_rows, loop.pad_id, device)
                    if parallel.world > 1:
                        batch = widen(batch, width, loop.pad_id)
                padded = bool(features.lengths[local_rows].min() < width)
                with autocast_for(device, levers.autocast):
                    loss = forward(**model_inputs(batch, padded, sdpa)).loss
                (loss * weight if weight != 1.0 else loss).backward()
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                loop.optimizer.step()
                loop.scheduler.step()
                loop.optimizer.zero_grad(set_to_none=True)
                progress["step"] += 1
                progress["train_features_seen"] += len(rows)
                # A weightless row (fewer rows than ranks) counts for nothing.
                meter.add(loss, batch["attention_mask"], len(local_rows) if weight else 0, len(rows))
                if progress["step"] % loop.steps_per_epoch == 0 or progress["step"] >= loop.total_steps:
                    break
                if progress["step"] % config.checkpoint_every_steps == 0:
                    meter.read()  # the checkpoint holds every step's loss
                    loop.checkpoint()
                    meter.start(epoch)
                elif progress["step"] % config.log_every_steps == 0:
                    meter.read()
        meter.read()
        _end_epoch(loop, epoch)
        loop.on_epoch(progress["history"][-1])
        loop.checkpoint()
    bar.close()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Meter:
    """Per-step losses and token counts kept on the device and read in one transfer at read points.

    Train seconds are the wall time between reads (the device synchronised there), so they hold what
    the device did, not only what the host queued; evaluation and checkpoints fall outside them.
    """

    def __init__(self, progress: dict[str, Any], parallel: Parallel, device: torch.device, bar: Any) -> None:
        self.progress, self.parallel, self.device, self.bar = progress, parallel, device, bar
        self.losses: list[torch.Tensor] = []  # this rank's loss of each step since the last read
        self.counts: list[int] = []  # this rank's rows of each step (0: a weightless row)
        self.rows: list[int] = []  # the global batch's rows of each step
        self.tokens = torch.zeros((), dtype=torch.int64, device=device)
        self.began = time.perf_counter()
        self.epoch = 0

    def start(self, epoch: int) -> None:
        _synchronize(self.device)
        self.began, self.epoch = time.perf_counter(), epoch

    def add(self, loss: torch.Tensor, mask: torch.Tensor, count: int, rows: int) -> None:
        """One step: its loss, attention mask, this rank's rows (0: a weightless row) and the global rows."""
        self.losses.append(loss.detach())
        self.counts.append(count)
        self.rows.append(rows)
        if count:
            self.tokens += mask.sum()

    def read(self) -> None:
        """Read the steps since the last read into progress (step_losses, tokens, seconds) and the bar."""
        _synchronize(self.device)
        now = time.perf_counter()
        self.progress["train_seconds"] += now - self.began
        self.began = now
        if not self.losses:
            return
        losses = torch.stack(self.losses).double()
        if self.parallel.world > 1:  # each rank's mean loss weighted by its rows, summed over the ranks
            losses = losses * torch.tensor(self.counts, dtype=torch.float64, device=self.device)
        values = self.parallel.sum(torch.cat([losses, self.tokens.double().view(1)])).tolist()
        step_losses = values[:-1]
        if self.parallel.world > 1:
            step_losses = [v / n for v, n in zip(step_losses, self.rows, strict=True)]
        self.progress["step_losses"].extend(step_losses)
        self.progress["train_tokens_seen"] += int(values[-1])
        rate = self.progress["train_features_seen"] / max(self.progress["train_seconds"], 1e-9)
        self.bar.set_postfix(loss=f"{step_losses[-1]:.3f}", feats_per_s=f"{rate:.1f}", epoch=self.epoch + 1)
        self.bar.update(len(step_losses))
        self.losses, self.counts, self.rows = [], [], []
        self.tokens = torch.zeros((), dtype=torch.int64, device=self.device)


@dataclass(frozen=True)
class _Levers:
    """The training-only levers of a run, resolved from its settings and device (see RunConfig)."""

    frozen_bf16: bool
    fused_lora: bool

    @property
    def autocast(self) -> bool | None:
        """bf16 autocast forced on when frozen weights are bf16 (on any device); else the device's default."""
        return True if self.frozen_bf16 else None

    @classmethod
    def resolve(cls, loop: _Loop, device: torch.device) -> _Levers:
        config, on_cuda = loop.config, device.type == "cuda"
        adapter = get_method(config.method).shares_base
        frozen_bf16 = adapter and (config.frozen_bf16 == "on" or (config.frozen_bf16 == "auto" and on_cuda))
        if config.frozen_bf16 == "on" and not adapter:
            loop.log(f"frozen_bf16: {config.method} trains its base weights, which stay fp32")
        fused = config.fused_lora == "on" or (config.fused_lora == "auto" and on_cuda)
        if frozen_bf16 or fused:
            on = [name for name, value in (("frozen_bf16", frozen_bf16), ("fused_lora", fused)) if value]
            loop.log(f"training levers on: {', '.join(on)}")
        return cls(frozen_bf16, fused)

    @contextlib.contextmanager
    def training(self, model: torch.nn.Module) -> Iterator[None]:
        """The levers in force for the block (the training steps); evaluation runs without them."""
        with contextlib.ExitStack() as stack:
            if self.frozen_bf16:
                stack.enter_context(frozen_linears_in_bf16(model))
            if self.fused_lora:
                stack.enter_context(fused_lora_forward(model))
            yield


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
    from peftqa.plots import plot_loss_curve

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
    files.write_json_atomic(run_dir / runs.PREDICTIONS_JSON, progress["last_eval"]["predictions"])
    runs.write_scores(run_dir / runs.SCORES_JSONL, _score_rows(prepared.eval_examples, progress["last_eval"]))
    plot_loss_curve(progress["history"], progress["step_losses"], run_dir / runs.LOSS_CURVE, title=run_dir.name)
    # metrics.json last: its presence means the run is complete.
    files.write_json_atomic(run_dir / runs.METRICS_JSON, metrics)
    remove_checkpoint(run_dir)
    loop.log(f"done: EM {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}; run directory {run_dir}")
    return metrics
