"""`train(config) -> metrics`: one training loop for every method.

Phases, in order: resolve data and model -> build (or load cached) features -> seed, build the
model, apply the method -> resume from a checkpoint if asked -> epochs of length-grouped,
dynamically padded batches (loss and throughput on the progress bar) -> per epoch: dev loss,
EM, F1 and a checkpoint -> final export, metrics.json, predictions.json, loss curve.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa import runs
from peftqa.backbone import load_qa_model, load_tokenizer, resolve_model
from peftqa.config import RunConfig
from peftqa.data import load_squad, md5_of, split_path
from peftqa.errors import PeftqaError
from peftqa.features import FeatureSet, load_or_build_features
from peftqa.methods import get_method
from peftqa.predict import autocast_for, collate, evaluate, model_device

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


@dataclass
class Prepared:
    """What a run trains and scores on."""

    train_examples: list
    dev_examples: list
    train_features: FeatureSet
    dev_features: FeatureSet
    data_md5: dict[str, str]
    tokenize_seconds: float
    features_from_cache: bool


def default_output_dir(config: RunConfig) -> Path:
    model_name = Path(config.model).name or "model"
    return Path("runs") / f"{config.method}-{model_name}-{datetime.now():%Y%m%d-%H%M%S}"


def prepare_data(config: RunConfig, tokenizer, log=print) -> Prepared:
    """Read the train and dev splits and build (or load) their features."""
    paths = {split: split_path(config.data_dir, split) for split in ("train", "dev")}
    data_md5 = {split: md5_of(path) for split, path in paths.items()}
    # A seeded random sample: the first N questions would cover only the first few articles.
    train_examples = load_squad(paths["train"], config.train_limit, shuffle_seed=config.seed)
    dev_examples = load_squad(paths["dev"], config.eval_limit)
    began = time.perf_counter()
    train_features, train_cached = load_or_build_features(
        train_examples, tokenizer, config.max_length, config.doc_stride, data_md5["train"]
    )
    dev_features, dev_cached = load_or_build_features(
        dev_examples, tokenizer, config.max_length, config.doc_stride, data_md5["dev"]
    )
    seconds = time.perf_counter() - began
    log(
        f"data: {len(train_examples)} train questions -> {len(train_features)} features, "
        f"{len(dev_examples)} dev questions -> {len(dev_features)} features "
        f"({'from cache' if train_cached and dev_cached else 'tokenised'} in {seconds:.1f} s)"
    )
    return Prepared(
        train_examples, dev_examples, train_features, dev_features, data_md5, seconds, train_cached and dev_cached
    )


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows: random order, little padding.

    Rows are shuffled, cut into mega-batches of 50 batches, sorted by length inside each, split
    into batches, and the batches shuffled again. The same seed gives the same batches.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches = []
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


def build_optimizer(model, config: RunConfig, total_steps: int):
    """AdamW without decay on biases and LayerNorm; linear warm-up then linear decay to zero."""
    decay, no_decay = [], []
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


def count_parameters(model) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total,
    }


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, progress: dict[str, Any]) -> None:
    """Everything --resume needs, written atomically (a kill -9 leaves the previous one intact)."""
    state = {
        "trainable": _trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "progress": progress,
    }
    path = run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".state.pt.partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(run_dir: Path, model, optimizer, scheduler) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    missing = model.load_state_dict(state["trainable"], strict=False).unexpected_keys
    if missing:
        raise PeftqaError(f"{path}: checkpoint does not match this model ({missing[:3]}...)")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["progress"]


_PROC_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> None:
    """Start counting a run's peak memory afresh: a study or sweep trains many runs in one process."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; on CPU the peak resident memory since reset_peak_memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # KiB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole process's peak (KiB on Linux)


def _settings(config: RunConfig, base_path: str, prepared: Prepared, device: torch.device) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "learning_rate": config.learning_rate,
        "base_model_path": base_path,
        "data_md5": prepared.data_md5,
        "train_questions": len(prepared.train_examples),
        "train_features": len(prepared.train_features),
        "dev_questions": len(prepared.dev_examples),
        "dev_features": len(prepared.dev_features),
        "versions": runs.package_versions(),
        "git_commit": runs.git_commit(),
        "device": runs.device_description(device),
        "started": datetime.now().isoformat(timespec="seconds"),
    }


# Settings that may change between an interrupted run and its resumption without changing the result.
_RESUMABLE_DIFFERENCES = {"data_dir", "output_dir"}


def check_same_settings(run_dir: Path, config: RunConfig) -> None:
    """--resume continues a run only with the settings it was started with."""
    path = run_dir / runs.RUN_JSON
    if not path.is_file():
        return
    recorded = runs.read_json(path).get("config", {})
    wanted = config.to_dict()
    changed = sorted(k for k in wanted if k not in _RESUMABLE_DIFFERENCES and recorded.get(k) != wanted[k])
    if changed:
        details = ", ".join(f"{k}: {recorded.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise PeftqaError(f"{run_dir} was trained with other settings ({details}); use another --output-dir")


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
    settings = _settings(config, base_path, prepared, device)
    if parallel.main:
        runs.write_json_atomic(run_dir / runs.RUN_JSON, settings)

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
    progress = {"step": 0, "history": [], "train_seconds": 0.0, "train_features_seen": 0, "train_tokens_seen": 0}
    if resume:
        restored = load_checkpoint(run_dir, model, optimizer, scheduler)
        if restored is not None:
            progress = restored
            log(f"resumed from step {progress['step']} of {total_steps}")

    hooks = _Hooks(log, on_epoch or _ignore)
    _fit(model, optimizer, scheduler, config, prepared, tokenizer.pad_token_id, run_dir, progress, total_steps, hooks)
    if not parallel.main:
        return progress["history"][-1]  # the same scores as the main process: every rank evaluates all of dev
    return _finish(model, spec, tokenizer, config, prepared, run_dir, progress, parameters, log)


@dataclass(frozen=True)
class _Hooks:
    """Where a run reports: progress lines, and each epoch's scores."""

    log: Callable[[str], None]
    on_epoch: Callable[[dict[str, Any]], None]


def _ignore(_entry: dict[str, Any]) -> None:
    return None


def _fit(model, optimizer, scheduler, config, prepared, pad_id, run_dir, progress, total_steps, hooks) -> None:
    """The loop: micro-batch -> loss -> clip -> step, a checkpoint every so often, eval per epoch."""
    device = model_device(model)
    features = prepared.train_features
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    parallel = init_parallel()
    forward = parallel.wrap(model)  # the model itself in one process; DDP (gradients averaged) in several
    quiet = not parallel.main  # one progress bar, not one per process
    bar = tqdm(total=total_steps, initial=progress["step"], desc=f"train {config.method}", unit="step", disable=quiet)
    while progress["step"] < total_steps:
        epoch, step_in_epoch = divmod(progress["step"], steps_per_epoch)
        # Batch order depends only on (seed, epoch): a resumed run sees the same batches.
        batches = length_grouped_batches(features.lengths, config.batch_size, config.seed * 1000 + epoch)
        forward.train()
        epoch_loss, epoch_batches = 0.0, 0
        for rows in batches[step_in_epoch:]:
            began = time.perf_counter()
            local_rows, weight = parallel.shard(rows)
            batch = collate(features, local_rows, pad_id, device)
            if parallel.world > 1:  # padded as wide as the global batch: pad logits take part in the loss's softmax
                batch = _widen(batch, int(features.lengths[rows].max()), pad_id)
            with autocast_for(device):
                loss = forward(**batch).loss
            (loss * weight if weight != 1.0 else loss).backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress["step"] += 1
            progress["train_seconds"] += time.perf_counter() - began
            progress["train_features_seen"] += len(rows)
            local_count = len(local_rows) if weight else 0  # a weightless row counts for nothing
            local_tokens = int(batch["attention_mask"].sum()) if weight else 0
            loss_sum, tokens = parallel.sum([loss.item() * local_count, local_tokens])
            progress["train_tokens_seen"] += int(tokens)
            loss_value = loss_sum / len(rows)
            progress.setdefault("step_losses", []).append(loss_value)
            epoch_loss += loss_value
            epoch_batches += 1
            rate = progress["train_features_seen"] / max(progress["train_seconds"], 1e-9)
            bar.set_postfix(loss=f"{loss_value:.3f}", feats_per_s=f"{rate:.1f}", epoch=epoch + 1)
            bar.update(1)
            epoch_done = progress["step"] % steps_per_epoch == 0
            if epoch_done or progress["step"] >= total_steps:
                break
            if progress["step"] % config.checkpoint_every_steps == 0 and parallel.main:
                save_checkpoint(run_dir, model, optimizer, scheduler, progress)
        _end_epoch(model, config, prepared, pad_id, progress, epoch, epoch_loss, epoch_batches, hooks.log)
        hooks.on_epoch(progress["history"][-1])
        if parallel.main:
            save_checkpoint(run_dir, model, optimizer, scheduler, progress)
    bar.close()


def _end_epoch(model, config, prepared, pad_id, progress, epoch, epoch_loss, epoch_batches, log) -> None:
    result = evaluate(
        model,
        prepared.dev_examples,
        prepared.dev_features,
        pad_id,
        config.eval_batch_size,
        config.n_best,
        config.max_answer_tokens,
    )
    # A resumed epoch only saw part of its batches here; the step losses hold the whole epoch.
    steps_per_epoch = math.ceil(len(prepared.train_features) / config.batch_size)
    first_step = epoch * steps_per_epoch
    epoch_losses = progress["step_losses"][first_step : progress["step"]]
    entry = {
        "epoch": epoch + 1,
        "step": progress["step"],
        "train_loss": float(np.mean(epoch_losses)) if epoch_losses else epoch_loss / max(epoch_batches, 1),
        "dev_loss": result.loss,
        "exact_match": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
    }
    progress["history"].append(entry)
    progress["last_eval"] = {
        "predictions": result.predictions,
        "seconds": result.seconds,
        "features_per_second": result.features_per_second,
    }
    log(
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, dev loss {entry['dev_loss']:.4f}, "
        f"EM {entry['exact_match']:.2f}, F1 {entry['f1']:.2f}"
    )


def _finish(model, spec, tokenizer, config, prepared, run_dir, progress, parameters, log) -> dict[str, Any]:
    """Export the weights and tokenizer, then the metrics and predictions of the last evaluation."""
    from peftqa.report_plots import plot_loss_curve

    spec.save(model, run_dir)
    tokenizer.save_pretrained(run_dir / runs.TOKENIZER_DIR)
    last = progress["history"][-1]
    artifact_bytes = sum(f.stat().st_size for f in (run_dir / spec.artifact).rglob("*") if f.is_file())
    metrics = {
        "method": config.method,
        "model": config.model,
        "exact_match": last["exact_match"],
        "f1": last["f1"],
        "dev_loss": last["dev_loss"],
        "dev_questions": len(prepared.dev_examples),
        **parameters,
        "artifact_bytes": artifact_bytes,
        "train_seconds": progress["train_seconds"],
        "train_features_per_second": progress["train_features_seen"] / max(progress["train_seconds"], 1e-9),
        "train_tokens_per_second": progress["train_tokens_seen"] / max(progress["train_seconds"], 1e-9),
        "eval_seconds": progress["last_eval"]["seconds"],
        "eval_features_per_second": progress["last_eval"]["features_per_second"],
        "tokenize_seconds": prepared.tokenize_seconds,
        "peak_memory_mb": peak_memory_mb(model_device(model)),
        "steps": progress["step"],
        "history": progress["history"],
    }
    runs.write_json_atomic(run_dir / runs.PREDICTIONS_JSON, progress["last_eval"]["predictions"])
    plot_loss_curve(progress["history"], progress["step_losses"], run_dir / runs.LOSS_CURVE, title=run_dir.name)
    # metrics.json last: its presence means the run is complete.
    runs.write_json_atomic(run_dir / runs.METRICS_JSON, metrics)
    checkpoint = run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
    checkpoint.unlink(missing_ok=True)
    (run_dir / CHECKPOINT_DIR).rmdir()
    log(f"done: EM {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f}; run directory {run_dir}")
    return metrics


# ---------------------------------------------------------------------------- data parallel
# `torchrun --nproc_per_node N -m peftqa train ...` (or `accelerate launch -m peftqa train ...`)
# starts N processes with WORLD_SIZE, RANK and LOCAL_RANK set. Each process takes its share of
# every global batch (--batch-size stays the global batch) and DDP averages the gradients, so N
# processes take the same optimiser steps as one. Every rank evaluates all of dev (the scores are
# the same everywhere); only rank 0 logs and writes the run directory.


def _quiet(*_args, **_kwargs) -> None:
    pass


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Run the block on rank 0 first, then on the others (which then find rank 0's cache)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def wrap(self, model):
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = model_device(model).type == "cuda"
        return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if on_gpu else None)

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's rows of a global batch, and the loss weight that makes DDP's gradient average
        equal to the mean over the whole batch when the ranks hold different numbers of rows."""
        if self.world == 1:
            return rows, 1.0
        mine = rows[self.rank :: self.world]
        if len(mine) == 0:  # fewer rows than ranks: a weightless row keeps every rank in step
            return rows[:1], 0.0
        return mine, len(mine) * self.world / len(rows)

    def sum(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (the loss and token counts of the global batch)."""
        if self.world == 1:
            return values
        on_gpu = torch.distributed.get_backend() == "nccl"
        tensor = torch.tensor(values, dtype=torch.float64, device="cuda" if on_gpu else "cpu")
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()


def _widen(batch: dict[str, torch.Tensor], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The batch padded on the right to `width` tokens (ids with pad_id, masks and segments with 0)."""
    extra = width - batch["input_ids"].shape[1]
    if extra <= 0:
        return batch
    padded = {}
    for name, tensor in batch.items():
        fill = pad_id if name == "input_ids" else 0
        padded[name] = torch.nn.functional.pad(tensor, (0, extra), value=fill) if tensor.ndim == 2 else tensor
    return padded


def init_parallel() -> Parallel:
    """Join the process group when launched by torchrun/accelerate (WORLD_SIZE > 1); else rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Parallel()
    if not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Parallel(torch.distributed.get_rank(), torch.distributed.get_world_size())
