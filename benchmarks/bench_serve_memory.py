"""The web page's memory: resident set size per count of runs loaded, shared base against merged copies.

    python -m benchmarks.bench_serve_memory --runs runs/quick-lora runs/quick-ia3

Each count of runs (1, 2, 4; runs 3 and 4 are copies of the given ones in other folders) is loaded in
a fresh process, shared and merged; resident set size after loading and one answer each.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import own_resources, run_arm
from benchmarks.serve_common import load_served, one_window_example, runs_to_measure

MODULE = "benchmarks.bench_serve_memory"
COUNTS = (1, 2, 4)
MEMORY_MODES = ("shared", "merged")


def resident_mib() -> float:
    """The current resident set size of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _memory_arm(run_dirs: list[str], mode: str, out: str) -> None:
    # What serving imports anyway, before the "no run loaded" reading.
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForQuestionAnswering  # noqa: F401

    gc.collect()
    before = resident_mib()
    loaded = load_served(run_dirs, mode, 1)
    # One answer each, as a server that has answered once: weights that are memory-mapped from
    # the safetensors files count as resident only once they are read.
    example = one_window_example()
    for model in loaded:
        model.answer(example["question"], example["context"], top_k=4)
    gc.collect()
    result = {"runs": len(loaded), "rss_mib": resident_mib(), "rss_before_mib": before, **own_resources()}
    Path(out).write_text(json.dumps(result))


def _copies(run_dirs: list[str], count: int, scratch: Path) -> list[str]:
    """`count` run folders: the given ones, then copies of them under other names."""
    chosen = []
    for i in range(count):
        source = Path(run_dirs[i % len(run_dirs)])
        if i < len(run_dirs):
            chosen.append(str(source))
            continue
        target = scratch / f"{source.name}-copy{i}"
        if not target.exists():
            shutil.copytree(source, target)
        chosen.append(str(target))
    return chosen


def measure_memory(run_dirs: list[str], modes: tuple[str, ...]) -> list[tuple[int, dict[str, float]]]:
    """(runs, {mode: MiB}) for each count, each figure from its own process."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in COUNTS:
            chosen = _copies(run_dirs, count, Path(scratch))
            figures = {}
            for mode in modes:
                result = run_arm(MODULE, "memory", ["--mode", mode, "--runs", *chosen])
                figures[mode] = result["rss_mib"]
            rows.append((count, figures))
        print(f"(before loading any run, after the imports: {result['rss_before_mib']:.0f} MiB)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=None, help="run directories (default: newest lora and ia3)")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm == "memory":
        _memory_arm(args.runs, args.mode, args.out)
        return
    run_dirs = runs_to_measure(args.runs)
    print("\nresident memory after loading and one answer per run (MiB), each in a fresh process")
    print(f"{'runs':<8}" + "".join(f"{mode:>12}" for mode in MEMORY_MODES))
    for count, figures in measure_memory(run_dirs[:2], MEMORY_MODES):
        print(f"{count:<8}" + "".join(f"{figures[mode]:>12.0f}" for mode in MEMORY_MODES))
    print("(python + torch + transformers alone take part of it)")


if __name__ == "__main__":
    main()
