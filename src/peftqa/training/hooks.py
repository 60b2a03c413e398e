"""What `train()`'s loop shows whoever watches it: the training state (`TrainingState`) and the hooks it
calls (`TrainHooks`), chained so that early stopping, the trackers and a caller each get every call.

Early stopping (peftqa.training.early_stopping) and live tracking (peftqa.training.tracking) are hook consumers like a
sweep's pruner or a benchmark: they live outside the loop and see only what the hooks hand them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from peftqa.methods import MethodSpec
from peftqa.settings.run_config import RunConfig
from peftqa.training.checkpoint import Progress, save_checkpoint
from peftqa.training.levers import SpeedLevers
from peftqa.training.parallel import Parallel
from peftqa.training.prepare import TrainingData


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
    # With the training state after each held-out evaluation (--eval-every-steps) once it is recorded:
    # progress.validation[-1] is its entry, progress.last_eval its per-question scores. An exception it
    # raises stops the run there (a sweep's successive halving prunes trials this way).
    after_validation: Callable[[TrainingState], None] | None = None
    # With the run's metrics once metrics.json, the predictions and the loss curve (unless train() was told
    # to draw none) are written.
    after_finish: Callable[[dict[str, Any]], None] | None = None


def chain_hooks(*hooks: TrainHooks | None) -> TrainHooks:
    """One TrainHooks calling each given one's hooks in order (None: none)."""
    given = [h for h in hooks if h is not None]
    chained: dict[str, Callable[[Any], None] | None] = {}
    for hook in fields(TrainHooks):
        calls = [getattr(h, hook.name) for h in given if getattr(h, hook.name) is not None]
        chained[hook.name] = _calling(calls) if len(calls) > 1 else (calls[0] if calls else None)
    return TrainHooks(**chained)


def _calling(calls: list[Callable[[Any], None]]) -> Callable[[Any], None]:
    def call_each(value: Any) -> None:
        for call in calls:
            call(value)

    return call_each


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
    # Early stopping: the best evaluation's trainable tensors (on the CPU), saved with every checkpoint.
    best_weights: dict[str, torch.Tensor] | None = None

    def checkpoint(self) -> None:
        if self.parallel.main:
            save_checkpoint(
                self.run_dir, self.model, self.optimizer, self.scheduler, self.progress, self.method, self.best_weights
            )

    def at_epoch_end(self) -> bool:
        """Whether the step just taken ends an epoch (or the run): the loop scores the run there."""
        return self.progress.step % self.steps_per_epoch == 0 or self.progress.step >= self.total_steps
