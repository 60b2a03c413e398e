"""Data-parallel training: two CPU processes (gloo) with the same global batch end with the same
trainable weights as one process, within atol 1e-5 (float sums are reordered by the all-reduce).

(The tokenisation fast path's equivalence with the plain one is checked in test_windows.py.)
"""

from __future__ import annotations

import json

import pytest

PARALLEL_ATOL = 1e-5  # two ranks vs one: the same global batches, gradients summed in another order
# The QA head's bias adds one constant to every logit of a softmax, so its true gradient is exactly 0:
# what is computed is rounding noise, which Adam turns into +-lr steps in either run. Not compared.
NOISE_ONLY = ("qa_outputs.bias",)


def _train_flags(model_dir, squad_dir, out) -> list[str]:
    # Batch 3 over 6 features: each global batch splits 2 + 1 over two ranks (the uneven case).
    values = {
        "--model": model_dir,
        "--data-dir": squad_dir,
        "--method": "lora",
        "--max-length": 128,
        "--doc-stride": 32,
        "--batch-size": 3,
        "--eval-batch-size": 4,
        "--epochs": 2,
        "--lr": 1e-2,
        "--output-dir": out,
        "--precision": "fp32",  # one process against two, in the arithmetic every CI machine has
    }
    return [str(item) for pair in values.items() for item in pair]


def _adapter_weights(run_dir) -> dict:
    from safetensors.torch import load_file

    files = sorted((run_dir / "adapter").rglob("*.safetensors"))
    assert files, f"no adapter weights in {run_dir}"
    return {name: tensor for f in files for name, tensor in load_file(f).items()}


def test_two_gloo_processes_match_one_process(tiny_bert_without_dropout, squad_dir, tmp_path):
    import os
    import subprocess
    import sys

    import torch

    from peftqa.cli.commands import main as cli_main

    single, double = tmp_path / "single", tmp_path / "double"
    assert cli_main(["train", *_train_flags(tiny_bert_without_dropout, squad_dir, single)]) in (0, None)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run(
        [*launch, "-m", "peftqa", "train", *_train_flags(tiny_bert_without_dropout, squad_dir, double)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    one, two = _adapter_weights(single), _adapter_weights(double)
    assert one.keys() == two.keys()
    changed = False
    for name in (n for n in one if not n.endswith(NOISE_ONLY)):
        torch.testing.assert_close(two[name], one[name], atol=PARALLEL_ATOL, rtol=0, msg=name)
        changed |= not torch.equal(one[name], torch.zeros_like(one[name]))
    assert changed  # the comparison is about trained weights, not untouched zeros
    metrics_one = json.loads((single / "metrics.json").read_text())
    metrics_two = json.loads((double / "metrics.json").read_text())
    assert metrics_two["steps"] == metrics_one["steps"]
    for entry_one, entry_two in zip(metrics_one["history"], metrics_two["history"], strict=True):
        assert entry_two["train_loss"] == pytest.approx(entry_one["train_loss"], abs=1e-4)
        assert entry_two["f1"] == pytest.approx(entry_one["f1"], abs=1e-6)
