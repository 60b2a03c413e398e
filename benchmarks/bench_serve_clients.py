"""The web page under concurrent clients: requests/s, p50/p95 per request and errors, in each mode.

    python -m benchmarks.bench_serve_clients --runs A B --clients 16
    python -m benchmarks.bench_serve_clients --runs A B --onnx A-onnx B-onnx --modes default,onnx

`--clients` threads each send `--client-requests` POST /api/predict at once (both models, the
one-window example) to the app under waitress in this process, after 5 warm-up requests; modes and
threads as in bench_serve_latency.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

from benchmarks import serve_common


def measure_clients(folders: list[str], mode: str, clients: int, per_client: int) -> dict:
    """`clients` threads sending `per_client` requests each, all at once: throughput and latency."""
    body = json.dumps(serve_common.one_window_example()).encode()
    with serve_common.served_side_by_side(folders, mode) as models, serve_common.Server(models) as server:
        for _ in range(5):
            server.ask(body)

        def client(_: int) -> tuple[list[float], int]:
            latencies, errors = [], 0
            for _ in range(per_client):
                try:
                    latencies.append(server.ask(body)[0])
                except (urllib.error.URLError, OSError, ValueError):
                    errors += 1
            return latencies, errors

        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(client, range(clients)))
        seconds = time.perf_counter() - began
    latencies = [value for values, _ in results for value in values]
    return {
        "requests": len(latencies),
        "errors": sum(errors for _, errors in results),
        "seconds": seconds,
        "per_second": len(latencies) / seconds,
        "latencies": latencies,
    }


def _print_clients(result: dict, mode: str, clients: int, per_client: int) -> None:
    latencies = result["latencies"] or [float("nan")]
    print(
        f"\n{clients} concurrent clients x {per_client} requests, mode {mode}: {result['per_second']:.1f} requests/s, "
        f"p50 {serve_common.percentile(latencies, 0.5):.0f} ms, p95 {serve_common.percentile(latencies, 0.95):.0f} ms, "
        f"{result['errors']} errors, {result['seconds']:.1f} s "
        f"(load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    serve_common.add_run_flags(parser, onnx=True)
    parser.add_argument("--clients", type=int, default=16, help="clients sending at once")
    parser.add_argument("--client-requests", type=int, default=8, help="requests each client sends")
    args = parser.parse_args()
    run_dirs = serve_common.runs_to_measure(args.runs)
    for mode, folders in serve_common.modes_to_measure(args, run_dirs):
        result = measure_clients(folders, mode, args.clients, args.client_requests)
        _print_clients(result, mode, args.clients, args.client_requests)


if __name__ == "__main__":
    main()
