"""Data-parallel plumbing: this process's place in a run of several.

`torchrun --nproc_per_node N -m peftqa train ...` (or `accelerate launch -m peftqa train ...`)
starts N processes with WORLD_SIZE, RANK and LOCAL_RANK set. Each process takes its share of
every global batch (--batch-size stays the global batch) and DDP averages the gradients, so N
processes take the same optimiser steps as one. Every rank evaluates all of dev (the scores are
the same everywhere); only rank 0 logs and writes the run directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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
    def main_first(self) -> Iterator[None]:
        """Run the block on rank 0 first, then on the others (which then find rank 0's cache)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def wrap(self, model: torch.nn.Module) -> Any:
        """The model itself in one process; DDP (gradients averaged over the ranks) in several."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = next(model.parameters()).device.type == "cuda"
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

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` (a tensor on the training device) summed over the ranks, on that device.

        The training loop passes every step's loss and the token count since its last read, so the
        ranks meet once per read, not once per step, and no value leaves the device here.
        """
        if self.world == 1:
            return values
        if torch.distributed.get_backend() == "gloo" and values.device.type != "cpu":
            return self.sum(values.cpu()).to(values.device)  # gloo reduces host tensors only
        summed = values.clone()
        torch.distributed.all_reduce(summed)
        return summed


def init_parallel() -> Parallel:
    """Join the process group when launched by torchrun/accelerate (WORLD_SIZE > 1); else rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Parallel()
    if not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Parallel(torch.distributed.get_rank(), torch.distributed.get_world_size())
