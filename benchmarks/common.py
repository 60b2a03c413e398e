"""What every benchmark shares: running one arm in its own process, resource figures, the table.

Each arm (peftqa or the baseline) runs in a fresh Python process, so its peak resident memory and
CPU time are its own; the arms run one after the other in the same invocation, on the same machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def own_resources() -> dict[str, float]:
    """Peak resident memory (MiB) and CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mib": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def write_result(path: str, result: dict[str, Any]) -> None:
    """An arm's figures plus its resources, for the parent process to read."""
    Path(path).write_text(json.dumps({**result, **own_resources()}))


def run_arm(module: str, arm: str, arguments: list[str]) -> dict[str, Any]:
    """Run `python -m module --arm arm ...` in a fresh process and return the figures it wrote."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        load_before = os.getloadavg()[0]
        command = [sys.executable, "-m", module, "--arm", arm, "--out", str(out), *arguments]
        subprocess.run(command, check=True)
        result = json.loads(out.read_text())
    result["load_average_before"] = load_before
    result["load_average_after"] = os.getloadavg()[0]
    return result


def machine_description(device: str = "cpu") -> str:
    """CPU model and count (and the GPU when used), for every printed table."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
    if device == "cuda" and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def ratio(ours: float | None, baseline: float | None) -> str:
    if not ours or not baseline:
        return "-"
    return f"{ours / baseline:.2f}x"


def print_table(title: str, rows: list[tuple[str, float | None, float | None, str]]) -> None:
    """Rows of (figure, peftqa, baseline, format); the ratio is peftqa / baseline."""
    print(f"\n{title}")
    print(f"{'figure':<34}{'peftqa':>14}{'baseline':>14}{'ratio':>10}")
    for name, ours, baseline, fmt in rows:
        shown = [format(v, fmt) if v is not None else "-" for v in (ours, baseline)]
        print(f"{name:<34}{shown[0]:>14}{shown[1]:>14}{ratio(ours, baseline):>10}")
