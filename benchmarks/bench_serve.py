"""The web page's figures: /api/predict latency for two models, and resident memory per runs loaded.

    python -m benchmarks.bench_serve                          # newest lora and ia3 runs under runs/
    python -m benchmarks.bench_serve --runs runs/quick-lora runs/quick-ia3 --requests 50

Latency: the app runs under waitress (as `peftqa serve` does) in this process; one client sends
`--requests` sequential POST /api/predict over HTTP, each asking both models about a one-window
SQuAD dev context, after 15 warm-up requests. p50/p95 are of the whole HTTP round trip. Measured
for the default page (fp32, shared base weights) and for `peftqa serve --fast` (merged, bf16).

Memory: each count of runs (1, 2, 4; runs 3 and 4 are copies of the given ones in other folders,
so they load as separate runs on the same backbone) is loaded in a fresh process, once with the
base weights shared (what the page does) and once with one base model per run (`load_run` alone).
The figure is the resident set size after loading, from /proc/self/status.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import machine_description, own_resources, run_arm

MODULE = "benchmarks.bench_serve"
COUNTS = (1, 2, 4)


def resident_mib() -> float:
    """The current resident set size of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _memory_arm(run_dirs: list[str], shared: bool, out: str) -> None:
    # What serving imports anyway, before the "no run loaded" reading.
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForQuestionAnswering  # noqa: F401

    from peftqa import runs
    from peftqa.serve.models import ServedModel, load_models

    gc.collect()
    before = resident_mib()
    if shared:
        loaded = load_models(run_dirs)
    else:
        loaded = [ServedModel(Path(d).name, runs.load_run(d)) for d in run_dirs]
    # One answer each, as a server that has answered once: weights that are memory-mapped from
    # the safetensors files count as resident only once they are read.
    example = _one_window_example()
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


def measure_memory(run_dirs: list[str]) -> list[tuple[int, float, float]]:
    """(runs, shared MiB, unshared MiB) for each count, each figure from its own process."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in COUNTS:
            chosen = _copies(run_dirs, count, Path(scratch))
            shared = run_arm(MODULE, "memory", ["--shared", "yes", "--runs", *chosen])
            alone = run_arm(MODULE, "memory", ["--shared", "no", "--runs", *chosen])
            rows.append((count, shared["rss_mib"], alone["rss_mib"]))
        print(f"(before loading any run, after the imports: {shared['rss_before_mib']:.0f} MiB)")
    return rows


def _one_window_example() -> dict:
    from peftqa.serve.compare import load_examples

    # The first shipped example (Super Bowl 50, 775 characters) fits one 256-token window.
    example = load_examples()["examples"][0]
    return {"context": example["context"], "question": example["question"], "answers": example["answers"]}


def measure_latency(run_dirs: list[str], requests: int, warmup: int = 15, fast: bool = False) -> dict:
    """p50/p95 of POST /api/predict (both models per request) over HTTP against waitress."""
    import waitress

    from peftqa.serve import create_app
    from peftqa.serve.models import load_models

    models = load_models(run_dirs, fast=fast)
    server = waitress.create_server(create_app({"MODELS": models}), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    body = json.dumps(_one_window_example()).encode()
    url = f"http://127.0.0.1:{server.effective_port}/api/predict"
    totals, per_model = [], {m.name: [] for m in models}
    cpu_seconds = 0.0
    try:
        for i in range(warmup + requests):
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            cpu_began = time.process_time()
            began = time.perf_counter()
            with urllib.request.urlopen(request) as response:
                answer = json.loads(response.read())
            elapsed = 1000 * (time.perf_counter() - began)
            if i >= warmup:
                totals.append(elapsed)
                cpu_seconds += time.process_time() - cpu_began
                for model in answer["models"]:
                    per_model[model["name"]].append(model["latency_ms"])
    finally:
        # Workers first (each pulls the trigger when it finishes a request), then the server is closed
        # from inside its own loop thread, which then ends: nothing touches a closed socket.
        server.task_dispatcher.shutdown()
        server.trigger.pull_trigger(server.close)
        thread.join(timeout=10)
    return {
        "models": [m.name for m in models],
        "total": totals,
        "per_model": per_model,
        # CPU time of this whole process (client, server and torch threads) per request: unlike
        # wall time it hardly grows when other work shares the cores.
        "cpu_ms_per_request": 1000 * cpu_seconds / max(1, requests),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _print_latency(latency: dict, threads: int, requests: int, fast: bool) -> None:
    mode = "--fast (merged adapters, bf16 autocast)" if fast else "default (fp32, shared base weights)"
    print(
        f"\nPOST /api/predict, {mode}, {len(latency['models'])} models, one-window context, {requests} requests, "
        f"{threads} torch thread(s) per model"
    )
    print(f"{'':<24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    rows = [("whole request (HTTP)", latency["total"])]
    rows += [(f"model {name}", values) for name, values in latency["per_model"].items()]
    for name, values in rows:
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        print(f"{name:<24}{p50:>10.1f}{p95:>10.1f}{statistics.fmean(values):>10.1f}")
    print(f"CPU time per request (all threads): {latency['cpu_ms_per_request']:.1f} ms")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=None, help="run directories (default: newest lora and ia3)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shared", default="yes", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm == "memory":
        _memory_arm(args.runs, args.shared == "yes", args.out)
        return

    from peftqa.serve.models import newest_runs

    run_dirs = args.runs or [str(d) for d in newest_runs()]
    if len(run_dirs) < 2:
        raise SystemExit("need two runs: train them with `make demo`, or pass --runs DIR DIR")
    print(f"machine: {machine_description()} (shared with other work while measuring)")
    print(f"runs: {', '.join(run_dirs)}")

    import torch

    # torch's default threads (what `peftqa serve` uses), then one thread per model for comparison:
    # the models of a request answer side by side, so with the default each pass asks for every core.
    default_threads = torch.get_num_threads()
    for fast in () if args.skip_latency else (False, True):
        for threads in dict.fromkeys((default_threads, 1)):
            torch.set_num_threads(threads)
            _print_latency(measure_latency(run_dirs[:2], args.requests, fast=fast), threads, args.requests, fast)
    torch.set_num_threads(default_threads)

    if not args.skip_memory:
        print("\nresident memory after loading (MiB), each in a fresh process")
        print(f"{'runs':<8}{'shared base':>14}{'one base each':>16}")
        for count, shared, alone in measure_memory(run_dirs[:2]):
            print(f"{count:<8}{shared:>14.0f}{alone:>16.0f}")
        print("(after loading and one answer per run; python + torch + transformers alone take part of it)")


if __name__ == "__main__":
    main()
