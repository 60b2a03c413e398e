"""benchmarks/bench_serve_floor.py: the work it counts and how it turns rates into least times.

No timing is asserted (rates differ from machine to machine); what is checked is that the FLOPs are
those of every linear layer on the one window, and the floors are those FLOPs over the best rates.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import train_tiny_runs


def test_floor_counts_the_linear_layers_of_one_window_and_divides_by_the_best_rate(tiny_bert_dir, squad_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from benchmarks import bench_serve_floor
    from peftqa.export.verify import merge_model
    from peftqa.inference import run_folder

    run_dir = train_tiny_runs(("lora",), tiny_bert_dir, squad_dir, tmp_path)["lora"]
    floor = bench_serve_floor.measure_floor(str(run_dir), seconds=0.05)

    merged = merge_model(run_folder.load_run(run_dir).model)
    weights = sum(m.in_features * m.out_features for m in merged.modules() if isinstance(m, torch.nn.Linear))
    # Every linear layer (the adapter merged into its base, the QA head too) once per token: 2 FLOPs a weight.
    assert floor["gflop"] * 1e9 == pytest.approx(2 * floor["tokens"] * weights)
    rates = floor["rates_g_per_s"]
    assert set(rates) == {"torch fp32", "onnxruntime fp32", "onnxruntime int8"}
    assert all(rate > 0 for rate in rates.values())
    fastest_fp32 = max(rates["torch fp32"], rates["onnxruntime fp32"])
    assert floor["fp32_floor_ms"] == pytest.approx(1000 * floor["gflop"] / fastest_fp32)
    assert floor["int8_floor_ms"] == pytest.approx(1000 * floor["gflop"] / rates["onnxruntime int8"])
