"""The least time one forward pass of the example window can take on one core of this machine.

    python -m benchmarks.bench_serve_floor --runs runs/quick-lora

The linear layers' FLOPs in one forward pass of the example window (torch.utils.flop_counter on the
first run, merged) over this machine's best one-thread matrix-product rate on that window's largest
shape, measured in the same run with PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8: the least
time any implementation of that precision needs per model, one core each. Latency targets below it
cannot be met on this machine.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.serve_common import one_window_example, runs_to_measure


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

    from peftqa.data import Example
    from peftqa.export.verify import merge_model
    from peftqa.features.batches import collate
    from peftqa.features.windows import build_features
    from peftqa.inference import run_folder

    loaded = run_folder.load_run(run_dir)
    model = merge_model(loaded.model).eval()
    example = one_window_example()
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
    args = parser.parse_args()
    _print_floor(measure_floor(runs_to_measure(args.runs, needed=1)[0]))


if __name__ == "__main__":
    main()
