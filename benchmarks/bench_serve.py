"""The web page's figures: /api/predict latency for two models, throughput under concurrent clients,
resident memory per runs loaded, and how many answers the bf16 mode changes.

    python -m benchmarks.bench_serve --runs runs/quick-lora runs/quick-ia3 --skip-memory
    python -m benchmarks.bench_serve --runs A B --onnx A-onnx B-onnx --onnx-int8 A-int8 B-int8 --clients 16
    python -m benchmarks.bench_serve --runs A B --agreement --skip-latency --skip-memory

Latency: the app runs under waitress (as `peftqa serve` does, 4 threads) in this process, with the
torch (or ONNX Runtime) threads divided between the models as `peftqa serve` divides them; one client
sends `--requests` sequential POST /api/predict over HTTP, each asking both models about a one-window
SQuAD dev context (775 characters), after 15 warm-up requests. p50/p95 are of the whole HTTP round
trip. Modes: `default` (what `load_models(run_dirs)` gives: merged fp32 now; shared base, unmerged,
before), `shared` (--shared-base), `fast` (--fast), `onnx` and `onnx-int8` (--backend onnx on the
folders of --onnx / --onnx-int8).

Clients (`--clients N`): N threads each send `--client-requests` requests at once; requests/s over the
whole burst, p50/p95 per request, errors. To measure the code before a change, run this file with
PYTHONPATH pointing at the older src/ (the default mode needs nothing newer).

Floor (first, unless `--skip-floor`): the linear layers' FLOPs in one forward pass of the example
window (torch.utils.flop_counter on the first run, merged) over this machine's best one-thread
matrix-product rate on that window's largest shape, measured in the same run with PyTorch fp32,
ONNX Runtime fp32 and ONNX Runtime int8: the least time any implementation of that precision needs
per model, one core each. Latency targets below it cannot be met on this machine.

Memory: each count of runs (1, 2, 4; runs 3 and 4 are copies of the given ones in other folders) is
loaded in a fresh process, shared and merged; resident set size after loading and one answer each.

Agreement (`--agreement`): on each run's own dev sample, the answers of the merged fp32 model and of
the merged model under bf16 autocast (--fast) against `evaluate`'s.
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
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import machine_description, own_resources, run_arm

MODULE = "benchmarks.bench_serve"
COUNTS = (1, 2, 4)
MODES = ("default", "shared", "merged", "fast", "onnx", "onnx-int8")


def resident_mib() -> float:
    """The current resident set size of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _load(folders: list[str], mode: str, threads_per_model: int):
    """The served models of `mode`; `default` passes nothing but the folders (works on older code too)."""
    from peftqa.serve.models import load_models

    if mode == "default":
        return load_models(folders)
    if mode in ("onnx", "onnx-int8"):
        return load_models(folders, backend="onnx", onnx_threads=threads_per_model)
    return load_models(folders, mode=mode)


def _memory_arm(run_dirs: list[str], mode: str, out: str) -> None:
    # What serving imports anyway, before the "no run loaded" reading.
    import peft  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForQuestionAnswering  # noqa: F401

    gc.collect()
    before = resident_mib()
    loaded = _load(run_dirs, mode, 1)
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


def _one_window_example() -> dict:
    from peftqa.data import load_examples

    # The first shipped example (Super Bowl 50, 775 characters) fits one 256-token window.
    example = load_examples()["examples"][0]
    return {"context": example["context"], "question": example["question"], "answers": example["answers"]}


class _Server:
    """The app under waitress in a thread of this process, on a free port."""

    def __init__(self, models, threads: int = 4) -> None:
        import logging

        import waitress

        # "Task queue depth is N" for every queued request: the point of the client test, not news.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

        from peftqa.serve import create_app

        self.server = waitress.create_server(create_app({"MODELS": models}), host="127.0.0.1", port=0, threads=threads)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.effective_port}/api/predict"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # Workers first (each pulls the trigger when it finishes a request), then the server is closed
        # from inside its own loop thread, which then ends: nothing touches a closed socket.
        self.server.task_dispatcher.shutdown()
        self.server.trigger.pull_trigger(self.server.close)
        self.thread.join(timeout=10)

    def ask(self, body: bytes) -> tuple[float, dict]:
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        return 1000 * (time.perf_counter() - began), answer


def _thread_share(count: int) -> int:
    """Threads per model, as `peftqa serve` gives them (serve.models.threads_per_model; repeated here
    so that this file also measures older code, which lacks it)."""
    return max(1, (os.cpu_count() or 1) // max(1, count))


def measure_latency(folders: list[str], mode: str, requests: int, warmup: int = 15) -> dict:
    """p50/p95 of POST /api/predict (both models per request) over HTTP against waitress."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(_thread_share(len(folders)))
    try:
        models = _load(folders, mode, _thread_share(len(folders)))
        body = json.dumps(_one_window_example()).encode()
        totals, per_model = [], {m.name: [] for m in models}
        answers = {}
        cpu_seconds = 0.0
        with _Server(models) as server:
            for i in range(warmup + requests):
                cpu_began = time.process_time()
                elapsed, answer = server.ask(body)
                if i >= warmup:
                    totals.append(elapsed)
                    cpu_seconds += time.process_time() - cpu_began
                    for model in answer["models"]:
                        per_model[model["name"]].append(model["latency_ms"])
                        answers[model["name"]] = model["answer"]
    finally:
        torch.set_num_threads(threads)
    return {
        "models": [m.name for m in models],
        "total": totals,
        "per_model": per_model,
        "answers": answers,
        # CPU time of this whole process (client, server and model threads) per request: unlike
        # wall time it hardly grows when other work shares the cores.
        "cpu_ms_per_request": 1000 * cpu_seconds / max(1, requests),
    }


def measure_clients(folders: list[str], mode: str, clients: int, per_client: int) -> dict:
    """`clients` threads sending `per_client` requests each, all at once: throughput and latency."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(_thread_share(len(folders)))
    body = json.dumps(_one_window_example()).encode()
    try:
        models = _load(folders, mode, _thread_share(len(folders)))
        with _Server(models) as server:
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
    finally:
        torch.set_num_threads(threads)
    latencies = [value for values, _ in results for value in values]
    return {
        "requests": len(latencies),
        "errors": sum(errors for _, errors in results),
        "seconds": seconds,
        "per_second": len(latencies) / seconds,
        "latencies": latencies,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _print_latency(latency: dict, mode: str, requests: int) -> None:
    print(
        f"\nPOST /api/predict, mode {mode}, {len(latency['models'])} models, one-window context, {requests} requests, "
        f"{_thread_share(len(latency['models']))} thread(s) per model"
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


def _print_clients(result: dict, mode: str, clients: int, per_client: int) -> None:
    latencies = result["latencies"] or [float("nan")]
    print(
        f"\n{clients} concurrent clients x {per_client} requests, mode {mode}: {result['per_second']:.1f} requests/s, "
        f"p50 {percentile(latencies, 0.5):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms, "
        f"{result['errors']} errors, {result['seconds']:.1f} s "
        f"(load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


def measure_agreement(run_dir: str, data_dir: str | None) -> dict:
    """Answers of the merged fp32 and merged bf16 models against `evaluate`'s on the run's dev sample."""
    from peftqa import runs
    from peftqa.export import merge_model
    from peftqa.postprocess import best_answers, postprocess
    from peftqa.predict import evaluate, predict_logits, run_questions

    loaded = runs.load_run(run_dir)
    config = loaded.config
    examples, features = run_questions(config, loaded.tokenizer, data_dir)
    pad = loaded.tokenizer.pad_token_id
    reference = evaluate(loaded.model, examples, features, pad, config.scoring).predictions
    merged = merge_model(loaded.model)
    merged_answers = evaluate(merged, examples, features, pad, config.scoring).predictions
    starts, ends, _ = predict_logits(merged, features, config.scoring.batch_size, pad, bf16=True)
    bf16_answers = best_answers(
        postprocess(examples, features, starts, ends, config.scoring.n_best, config.scoring.max_answer_tokens)
    )
    from peftqa.data import gold_answers
    from peftqa.metrics import compute_metrics

    gold = gold_answers(examples)
    return {
        "questions": len(examples),
        "merged_fp32_same": sum(merged_answers[q] == a for q, a in reference.items()),
        "bf16_same": sum(bf16_answers[q] == a for q, a in reference.items()),
        "fp32_metrics": compute_metrics(reference, gold),
        "bf16_metrics": compute_metrics(bf16_answers, gold),
    }


def _best_rate(run_once, operations: float, seconds: float) -> float:
    """The best of five timings of `run_once` (each `seconds / 5` long), in operations per second.

    The best, not the mean: the floor asks how fast this machine can multiply, not how fast it
    did while something else ran.
    """
    run_once()  # first call: allocation, kernel choice
    best = 0.0
    for _ in range(5):
        count, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds / 5:
            run_once()
            count += 1
        best = max(best, operations * count / elapsed)
    return best


def _onnx_matmul_session(tokens: int, rows: int, columns: int, int8: bool):
    """One-node ONNX Runtime sessions (one thread) multiplying [tokens, rows] by a [rows, columns]
    weight: MatMul in fp32, or MatMulInteger (uint8 x int8, what dynamic int8 quantisation runs)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        weight = rng.integers(-127, 128, (rows, columns), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
        x = rng.integers(0, 256, (tokens, rows), dtype=np.uint8)
    else:
        weight = rng.standard_normal((rows, columns), dtype=np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        x = rng.standard_normal((tokens, rows), dtype=np.float32)
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("x", x_type, [tokens, rows])],
        [helper.make_tensor_value_info("y", y_type, [tokens, columns])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(["y"], {"x": x})


def measure_floor(run_dir: str, seconds: float = 2.0) -> dict:
    """The least time one forward pass of the example window can take on one core of this machine.

    Work: the matrix products of one forward pass of the run's merged model on the example's one
    window (torch.utils.flop_counter: the linear layers' addmm/mm; it has no formula for the CPU's
    fused attention, and layer norms, softmax and GELU are left out too, so this is a lower bound).
    Speed: this machine's best sustained matrix-product rate on that window's largest shape,
    [tokens, hidden] x [hidden, intermediate], one thread, measured now: PyTorch fp32, ONNX Runtime
    fp32 and ONNX Runtime int8 (MatMulInteger). Two models answer side by side, one core each, so
    the two-model request cannot be faster than one model's floor.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from peftqa import runs
    from peftqa.batches import collate
    from peftqa.data import Example
    from peftqa.export import merge_model
    from peftqa.features import build_features

    loaded = runs.load_run(run_dir)
    model = merge_model(loaded.model).eval()
    example = _one_window_example()
    scoring = loaded.config.scoring
    features = build_features(
        [Example("q", example["question"], example["context"], (), ())],
        loaded.tokenizer,
        scoring.max_length,
        scoring.doc_stride,
    )
    batch = collate(features, [0], loaded.tokenizer.pad_token_id, torch.device("cpu"))
    batch.pop("start_positions"), batch.pop("end_positions")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**batch)
    flops = float(counter.get_total_flops())
    config = model.config
    tokens = int(batch["input_ids"].shape[1])
    hidden = int(config.hidden_size)  # DistilBertConfig maps hidden_size to dim
    intermediate = int(getattr(config, "intermediate_size", None) or config.hidden_dim)
    shape_ops = 2.0 * tokens * hidden * intermediate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        left, right = torch.randn(tokens, hidden), torch.randn(hidden, intermediate)
        rates = {"torch fp32": _best_rate(lambda: torch.mm(left, right), shape_ops, seconds)}
    finally:
        torch.set_num_threads(threads)
    for name, int8 in (("onnxruntime fp32", False), ("onnxruntime int8", True)):
        rates[name] = _best_rate(_onnx_matmul_session(tokens, hidden, intermediate, int8), shape_ops, seconds)
    fp32_rate = max(rates["torch fp32"], rates["onnxruntime fp32"])
    return {
        "tokens": tokens,
        "shape": f"[{tokens} x {hidden}] x [{hidden} x {intermediate}]",
        "gflop": flops / 1e9,
        "rates_g_per_s": {name: rate / 1e9 for name, rate in rates.items()},
        "fp32_floor_ms": 1000 * flops / fp32_rate,
        "int8_floor_ms": 1000 * flops / rates["onnxruntime int8"],
    }


def _print_floor(floor: dict) -> None:
    rates = ", ".join(f"{name} {rate:.1f}" for name, rate in floor["rates_g_per_s"].items())
    print(
        f"\nfloor: one forward pass of the {floor['tokens']}-token window = {floor['gflop']:.2f} GFLOP in the linear"
        " layers (torch.utils.flop_counter; attention not counted)"
    )
    print(f"this machine, one thread, {floor['shape']}, best of 5: {rates} G(FL)OP/s")
    print(
        f"least time per model on one core (the two models answer side by side, one core each): "
        f"fp32 {floor['fp32_floor_ms']:.1f} ms, int8 {floor['int8_floor_ms']:.1f} ms "
        "(matrix products at the measured peak, nothing else)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=None, help="run directories (default: newest lora and ia3)")
    parser.add_argument("--onnx", nargs="*", default=[], help="ONNX fp32 exports of the runs (mode onnx)")
    parser.add_argument("--onnx-int8", nargs="*", default=[], help="ONNX int8 exports of the runs (mode onnx-int8)")
    parser.add_argument("--modes", default=None, help=f"comma-separated from {', '.join(MODES)} (default: all given)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=0, help="also measure this many concurrent clients")
    parser.add_argument("--client-requests", type=int, default=8, help="requests each client sends")
    parser.add_argument("--agreement", action="store_true", help="count answers changed by bf16 (--fast)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-floor", action="store_true", help="skip the floor (least time per forward pass)")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm == "memory":
        _memory_arm(args.runs, args.mode, args.out)
        return

    from peftqa.serve.models import newest_runs

    run_dirs = args.runs or [str(d) for d in newest_runs()]
    if len(run_dirs) < 2:
        raise SystemExit("need two runs: train them with `make demo`, or pass --runs DIR DIR")
    folders = {"onnx": args.onnx[:2], "onnx-int8": args.onnx_int8[:2]}
    modes = args.modes.split(",") if args.modes else [m for m in MODES if m not in folders or folders[m]]
    print(f"machine: {machine_description()} (shared with other work while measuring)")
    print(f"runs: {', '.join(run_dirs)}")
    if not args.skip_floor:
        _print_floor(measure_floor(run_dirs[0]))

    for mode in () if args.skip_latency else modes:
        chosen = folders.get(mode) or run_dirs[:2]
        _print_latency(measure_latency(chosen, mode, args.requests), mode, args.requests)
    if args.clients:
        for mode in modes:
            chosen = folders.get(mode) or run_dirs[:2]
            result = measure_clients(chosen, mode, args.clients, args.client_requests)
            _print_clients(result, mode, args.clients, args.client_requests)

    if args.agreement:
        print("\nanswers identical to `evaluate` on each run's dev sample")
        for run_dir in run_dirs[:2]:
            found = measure_agreement(run_dir, args.data_dir)
            print(
                f"{Path(run_dir).name}: merged fp32 {found['merged_fp32_same']}/{found['questions']}, "
                f"merged bf16 {found['bf16_same']}/{found['questions']}; EM/F1 fp32 "
                f"{found['fp32_metrics']['exact_match']:.2f}/{found['fp32_metrics']['f1']:.2f}, bf16 "
                f"{found['bf16_metrics']['exact_match']:.2f}/{found['bf16_metrics']['f1']:.2f}"
            )

    if not args.skip_memory:
        memory_modes = ("shared", "merged")
        print("\nresident memory after loading and one answer per run (MiB), each in a fresh process")
        print(f"{'runs':<8}" + "".join(f"{mode:>12}" for mode in memory_modes))
        for count, figures in measure_memory(run_dirs[:2], memory_modes):
            print(f"{count:<8}" + "".join(f"{figures[mode]:>12.0f}" for mode in memory_modes))
        print("(python + torch + transformers alone take part of it)")


if __name__ == "__main__":
    main()
