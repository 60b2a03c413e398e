"""`Meter`: the training steps' losses and token counts, read from the device only at read points.

A step leaves its loss and its batch's real-token count on the device; the loop reads them all in one
transfer every `log_every_steps` steps, before a checkpoint and at the end of an epoch. A read per
step would make the host wait for the device at every step instead of queueing the next one.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from peftqa.training.checkpoint import Progress
from peftqa.training.parallel import Parallel


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Meter:
    """Per-step losses and token counts kept on the device and read in one transfer at read points.

    Train seconds are the wall time between reads (the device synchronised there), so they hold what
    the device did, not only what the host queued; evaluation and checkpoints fall outside them.
    """

    def __init__(self, progress: Progress, parallel: Parallel, device: torch.device, bar: Any) -> None:
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
        self.progress.train_seconds += now - self.began
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
        self.progress.step_losses.extend(step_losses)
        self.progress.train_tokens_seen += int(values[-1])
        rate = self.progress.train_features_seen / max(self.progress.train_seconds, 1e-9)
        self.bar.set_postfix(loss=f"{step_losses[-1]:.3f}", feats_per_s=f"{rate:.1f}", epoch=self.epoch + 1)
        self.bar.update(len(step_losses))
        self.losses, self.counts, self.rows = [], [], []
        self.tokens = torch.zeros((), dtype=torch.int64, device=self.device)
