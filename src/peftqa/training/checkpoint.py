"""What `--resume` needs: the checkpoint written during training and read back to continue it.

A checkpoint holds the trainable tensors, the optimiser and scheduler states, the random-number
states, the loop's `Progress` and what the method keeps besides its parameters (MethodSpec's
training_state: AdaLoRA's importance scores), written atomically to RUN_DIR/checkpoint/state.pt. A run resumes
only with the settings it was started with (run.json says which).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from peftqa import files
from peftqa.data import Example
from peftqa.errors import PeftqaError
from peftqa.inference import run_files, run_folder
from peftqa.inference.evaluate import EvalResult
from peftqa.methods import MethodSpec
from peftqa.settings.run_config import RunConfig, recorded_config, settings_that_may_change_on_resume

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


@dataclass
class LastEvaluation:
    """The latest epoch's evaluation beyond its history entry: what the run's final files are made of."""

    predictions: dict[str, str]  # question id -> best answer
    scores: dict[str, dict[str, float]]  # question id -> its exact_match and f1
    intervals: dict[str, list[float]]  # "exact_match", "f1" -> 95% bootstrap interval [low, high]
    seconds: float
    features_per_second: float
    # SQuAD 2.0 data: the null threshold and the official breakdown (EvalResult.answerability); else {}.
    answerability: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, result: EvalResult) -> LastEvaluation:
        """What the run keeps of `predict.evaluate`'s result (not the n-best candidates)."""
        intervals = {name: result.metrics[f"{name}_ci"] for name in ("exact_match", "f1")}
        return cls(
            result.predictions,
            result.scores,
            intervals,
            result.seconds,
            result.features_per_second,
            result.answerability,
        )

    def score_rows(self, examples: list[Example]) -> list[dict[str, Any]]:
        """One row per scored question, in `examples`' order: what scores.jsonl holds."""
        return [
            {"id": e.id, "title": e.title, **self.scores[e.id], "prediction": self.predictions.get(e.id, "")}
            for e in examples
        ]


@dataclass
class Progress:
    """What the loop has done so far: saved in every checkpoint, so a resumed run carries on from it."""

    step: int = 0  # optimiser steps taken
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch: losses, EM, F1
    step_losses: list[float] = field(default_factory=list)  # training loss of every optimiser step
    train_seconds: float = 0.0
    train_features_seen: int = 0
    train_tokens_seen: int = 0
    last_eval: LastEvaluation | None = None  # the latest evaluation; None until the first one
    # --eval-every-steps: every held-out evaluation as {step, eval_loss, exact_match, f1}, oldest first.
    validation: list[dict[str, Any]] = field(default_factory=list)
    stopped_at_step: int | None = None  # where early stopping ended training; None while it goes on

    def throughput(self) -> dict[str, float]:
        """Training seconds so far and the features and real tokens trained per second (metrics.json's)."""
        seconds = max(self.train_seconds, 1e-9)
        return {
            "train_seconds": self.train_seconds,
            "train_features_per_second": self.train_features_seen / seconds,
            "train_tokens_per_second": self.train_tokens_seen / seconds,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Progress:
        """The inverse of `dataclasses.asdict`, as a checkpoint stores it."""
        last_eval = values["last_eval"]
        return cls(**{**values, "last_eval": LastEvaluation(**last_eval) if last_eval is not None else None})


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy, on the CPU, of the tensors a method trains (what a checkpoint and early stopping keep)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    progress: Progress,
    method: MethodSpec | None = None,
    best_weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything --resume needs, written atomically (a kill -9 leaves the previous one intact); with
    early stopping also the best evaluation's trainable tensors, in the same file as the progress that
    names their step, so the two never disagree."""
    state = {
        "method": method.training_state(model) if method is not None and method.training_state else None,
        "trainable": trainable_state(model),
        "best_trainable": best_weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "progress": dataclasses.asdict(progress),
    }
    with files.atomic_path(checkpoint_path(run_dir)) as partial:
        torch.save(state, partial)


def load_checkpoint(
    run_dir: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, method: MethodSpec | None = None
) -> Progress | None:
    """Restore the run's checkpoint into model, optimiser, scheduler and the method's own training state
    (`method.restore_training_state`); its progress, or None if none.

    Every trainable tensor must be in the checkpoint and nothing else: a checkpoint of another method or
    model is refused, not half-loaded.
    """
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        missing = sorted(trainable - set(state["trainable"]))
        unexpected = model.load_state_dict(state["trainable"], strict=False).unexpected_keys
    except Exception as error:  # a damaged file: torch raises whatever its unpickling meets
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PeftqaError(
            f"{path}: cannot read the checkpoint ({first}); remove {CHECKPOINT_DIR}/ to train the run from the start"
        ) from error
    if missing or unexpected:
        raise PeftqaError(
            f"{path}: checkpoint does not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as error:  # the parameter groups differ: written by a peftqa that grouped them otherwise
        raise PeftqaError(f"{path}: the optimiser state does not match this run's parameter groups ({error})") from None
    scheduler.load_state_dict(state["scheduler"])
    if method is not None and method.restore_training_state and state.get("method") is not None:
        method.restore_training_state(model, state["method"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return Progress.from_dict(state["progress"])


def load_best_weights(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """The best evaluation's trainable tensors the checkpoint holds (early stopping), or None."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    # Memory-mapped: only the tensors asked for are read, not the whole optimiser state again.
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("best_trainable")


def remove_checkpoint(run_dir: Path) -> None:
    """Once the run is complete: its weights are exported and the checkpoint is no longer needed."""
    checkpoint_path(run_dir).unlink(missing_ok=True)
    (run_dir / CHECKPOINT_DIR).rmdir()


def check_same_data(run_dir: Path, data_files: dict[str, dict[str, Any]]) -> None:
    """A run continues only on the data it started on: same fingerprint for every file run.json names."""
    path = run_dir / run_folder.RUN_JSON
    if not path.is_file():
        return
    recorded = run_files.read_settings(path, config_checked=False).get("data_files") or {}
    changed = [
        f"{split} ({described['source']})"
        for split, described in data_files.items()
        if split in recorded and recorded[split].get("fingerprint") != described["fingerprint"]
    ]
    if changed:
        raise PeftqaError(
            f"{run_dir} was trained on other data: {', '.join(changed)} changed; use another --output-dir"
        )


def check_same_settings(run_dir: Path, config: RunConfig) -> None:
    """A run continues (`--resume`, or a study re-using its run folders) only with the settings it was
    started with: a changed learning rate must not silently return the run trained at the old one."""
    path = run_dir / run_folder.RUN_JSON
    if not path.is_file():
        return
    # A setting added after the run was started is read as its default (the run was trained that way),
    # except the QA head's rate, which recorded_config reads from the rate such a run trained its head at.
    settings = run_files.read_settings(path, config_checked=False)
    recorded = {**RunConfig().to_dict(), **recorded_config(settings)}
    wanted = config.to_dict()
    # Data may move (its files' fingerprints are compared instead: check_same_data), and so may the
    # settings that give the same steps or only watch the run: their fields say so.
    may_change = settings_that_may_change_on_resume()
    changed = sorted(k for k in wanted if k not in may_change and recorded.get(k) != wanted[k])
    if changed:
        details = ", ".join(f"{k}: {recorded.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise PeftqaError(f"{run_dir} was trained with other settings ({details}); use another --output-dir")
