"""benchmarks/bench_gpu.py end to end on a CPU with tiny sizes (slow: a dozen training runs)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_gpu_smoke_runs_every_row_and_writes_its_table(tiny_bert_dir, squad_dir, tmp_path, capsys):
    from benchmarks import bench_gpu

    out = tmp_path / "bench.json"
    flags = ["--smoke", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--out", str(out)]
    bench_gpu.main([*flags, "--max-length", "128", "--doc-stride", "32"])
    rows = json.loads(out.read_text())["rows"]
    # Baseline, every lever off, each lever added, the larger batch, then one epoch at each end of the range.
    assert len(rows) == 2 + len(bench_gpu.LEVERS) + 1 + 2
    assert not [row["note"] for row in rows if row["note"].startswith("failed")]
    assert all(row["train_features_per_second"] > 0 and row["ms_per_step"] > 0 for row in rows)
    assert [row["f1"] is not None for row in rows] == [False] * 7 + [True, True]
    assert rows[1]["settings"] == bench_gpu.ALL_OFF and rows[5]["settings"] == bench_gpu.ALL_ON
    table = capsys.readouterr().out
    assert "GPU busy %" in table and "n/a |" in table  # no GPU here: no utilisation figure
