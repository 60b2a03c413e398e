"""hardware: the probes read what the machine says (cpu flags, affinity, peak memory)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from peftqa import hardware
from peftqa.hardware import cpu_has_bf16


def test_cpu_bf16_units_are_read_from_the_cpu_flags():
    assert cpu_has_bf16("processor : 0\nflags : fpu avx2 avx512f amx_bf16 amx_tile\n") is True
    assert cpu_has_bf16("flags\t\t: fpu avx2 avx512_bf16\n") is True
    assert cpu_has_bf16("flags : fpu sse avx2 fma\n") is False
    assert cpu_has_bf16("model name : something\n") is None


def test_cpu_cores_counts_the_affinity_mask_not_the_machine():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks here")
    assert hardware.cpu_cores() == len(os.sched_getaffinity(0))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_counts_from_the_start_of_each_run():
    cpu = torch.device("cpu")
    hardware.reset_peak_memory(cpu)
    ballast = np.ones(400 * 2**20 // 8)  # 400 MiB, every page written
    with_ballast = hardware.peak_memory_mb(cpu)
    del ballast
    hardware.reset_peak_memory(cpu)  # the next run in this process starts from what is resident now
    assert hardware.peak_memory_mb(cpu) < with_ballast - 300
