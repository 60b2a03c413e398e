"""What this machine offers, asked in one place: the device to use, CPU cores and bf16 units, GPUs,
memory available and the peak memory a run used. A leaf: it imports nothing of peftqa."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

_PROC_STATUS = Path("/proc/self/status")
_PROC_MEMINFO = Path("/proc/meminfo")
_PROC_CPUINFO = Path("/proc/cpuinfo")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device) -> str:
    """The device in words for run.json: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's CPU set), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of units that multiply bf16 natively


def cpu_bf16_units(cpuinfo: str | None = None) -> list[str] | None:
    """The bf16 units this CPU has (its BF16_CPU_FLAGS, [] for none); None when it cannot be told."""
    if cpuinfo is None:
        try:
            cpuinfo = _PROC_CPUINFO.read_text()
        except OSError:
            return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX); None when it cannot be told.

    Without those units oneDNN emulates bf16, several times slower than fp32
    (docs/results/2026-11-27-serving.md).
    """
    units = cpu_bf16_units(cpuinfo)
    return None if units is None else bool(units)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (empty without CUDA)."""
    count = torch.cuda.device_count()  # NVML-based: does not initialise CUDA in this process
    if not count:
        return []
    listed = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        for line in _PROC_MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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
