"""`make bench`: every benchmark in turn, each printing its figures beside its baseline.

    python -m benchmarks.run_all            # CPU, the sizes the issue names (tens of minutes on 2 cores)
    python -m benchmarks.run_all --quick    # small sizes, a few minutes: a smoke test of the benchmarks

Each benchmark runs in its own process (one failing does not stop the others); the exit status is
non-zero when any failed. Training on a GPU is bench_gpu's (`make bench-gpu`), run on its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

QUICK = {
    "benchmarks.bench_tokenize": ["--questions", "10000"],
    "benchmarks.bench_steps": ["--steps", "4", "--questions", "200"],
    "benchmarks.bench_train": ["--train-questions", "256", "--dev-questions", "100"],
    "benchmarks.bench_serve_floor": [],
    "benchmarks.bench_serve_latency": ["--requests", "20"],
    "benchmarks.bench_serve_memory": [],
}
# The serving benchmarks that `make bench` runs (bench_serve_clients and bench_serve_agreement: by hand).
SERVE = ("benchmarks.bench_serve_floor", "benchmarks.bench_serve_latency", "benchmarks.bench_serve_memory")


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    """(module, arguments) of each benchmark to run, in order."""
    modules = ["benchmarks.bench_tokenize", "benchmarks.bench_steps", "benchmarks.bench_train", *SERVE]
    return [(module, list(QUICK[module]) if quick else []) for module in modules]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benchmarks run")
    args = parser.parse_args(argv)
    failed = []
    for module, arguments in plan(args.quick):
        print(f"\n=== {module} {' '.join(arguments)}", flush=True)
        began = time.perf_counter()
        if subprocess.run([sys.executable, "-m", module, *arguments]).returncode != 0:
            failed.append(module)
        print(f"=== {module}: {time.perf_counter() - began:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
