"""The web page's latency: POST /api/predict for two models over HTTP, in each serving mode.

    python -m benchmarks.bench_serve_latency --runs runs/quick-lora runs/quick-ia3
    python -m benchmarks.bench_serve_latency --runs A B --onnx A-onnx B-onnx --onnx-int8 A-int8 B-int8

The app runs under waitress (as `peftqa serve` does, 4 threads) in this process, with the torch (or
ONNX Runtime) threads divided between the models as `peftqa serve` divides them; one client sends
`--requests` sequential POST /api/predict over HTTP, each asking both models about a one-window SQuAD
dev context (775 characters), after 15 warm-up requests. p50/p95 are of the whole HTTP round trip.
Modes: `default` (what `load_models(run_dirs)` gives: merged fp32), `shared` (--shared-base), `fast`
(--fast), `onnx` and `onnx-int8` (--backend onnx on the folders of --onnx / --onnx-int8). To measure
the code before a change, run this file with PYTHONPATH pointing at the older src/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks.serve_common import (
    Server,
    add_run_flags,
    modes_to_measure,
    one_window_example,
    percentile,
    runs_to_measure,
    served_side_by_side,
    thread_share,
)


def measure_latency(folders: list[str], mode: str, requests: int, warmup: int = 15) -> dict:
    """p50/p95 of POST /api/predict (both models per request) over HTTP against waitress."""
    with served_side_by_side(folders, mode) as models, Server(models) as server:
        body = json.dumps(one_window_example()).encode()
        totals, per_model = [], {m.name: [] for m in models}
        answers = {}
        cpu_seconds = 0.0
        for i in range(warmup + requests):
            cpu_began = time.process_time()
            elapsed, answer = server.ask(body)
            if i >= warmup:
                totals.append(elapsed)
                cpu_seconds += time.process_time() - cpu_began
                for model in answer["models"]:
                    per_model[model["name"]].append(model["latency_ms"])
                    answers[model["name"]] = model["answer"]
    return {
        "models": [m.name for m in models],
        "total": totals,
        "per_model": per_model,
        "answers": answers,
        # CPU time of this whole process (client, server and model threads) per request: unlike
        # wall time it hardly grows when other work shares the cores.
        "cpu_ms_per_request": 1000 * cpu_seconds / max(1, requests),
    }


def _print_latency(latency: dict, mode: str, requests: int) -> None:
    print(
        f"\nPOST /api/predict, mode {mode}, {len(latency['models'])} models, one-window context, {requests} requests, "
        f"{thread_share(len(latency['models']))} thread(s) per model"
    )
    print(f"{'':<28}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    rows = [("whole request (HTTP)", latency["total"])]
    rows += [(f"model {name}", values) for name, values in latency["per_model"].items()]
    for name, values in rows:
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        print(f"{name:<28}{p50:>10.1f}{p95:>10.1f}{statistics.fmean(values):>10.1f}")
    print(f"answers: {latency['answers']}")
    print(f"CPU time per request (all threads): {latency['cpu_ms_per_request']:.1f} ms")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_flags(parser, onnx=True)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    run_dirs = runs_to_measure(args.runs)
    for mode, folders in modes_to_measure(args, run_dirs):
        _print_latency(measure_latency(folders, mode, args.requests), mode, args.requests)


if __name__ == "__main__":
    main()
