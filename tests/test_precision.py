"""levers.precision: bf16 autocast where the hardware has bf16 units; fp32 weights, adapters and evaluation."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.inference.rescore import evaluate_run
from peftqa.settings.run_config import RunConfig
from peftqa.training.levers.precision import resolve_precision
from peftqa.training.loop import train
from tests.helpers import tiny_run_config

ZEN4 = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
XEON = "flags : fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
AVX2 = "flags : fpu sse avx2 fma\n"
CPU = torch.device("cpu")


def test_auto_is_bf16_where_the_cpu_has_bf16_units_and_fp32_where_it_would_be_emulated():
    assert resolve_precision("auto", CPU, ZEN4).to_dict() == {
        "setting": "auto",
        "used": "bf16",
        "why": "auto: this CPU has bf16 units (avx512_bf16)",
    }
    assert resolve_precision("auto", CPU, XEON).why == "auto: this CPU has bf16 units (amx_bf16)"
    emulated = resolve_precision("auto", CPU, AVX2)
    assert not emulated.bf16 and "no bf16 units" in emulated.why
    assert not resolve_precision("auto", CPU, "model name : unknown\n").bf16  # cannot tell: fp32


def test_an_explicit_setting_wins_and_says_when_bf16_is_emulated():
    assert not resolve_precision("fp32", CPU, ZEN4).bf16
    forced = resolve_precision("bf16", CPU, AVX2)
    assert forced.bf16 and "emulated" in forced.why
    assert "emulated" not in resolve_precision("bf16", CPU, ZEN4).why
    cuda = torch.device("cuda")  # only the device's type is read
    assert resolve_precision("auto", cuda, AVX2).bf16 and not resolve_precision("fp32", cuda).bf16


def test_precision_is_checked_and_auto_by_default():
    assert RunConfig().speed.precision == "auto"
    with pytest.raises(PeftqaError, match="--precision: must be one of auto, fp32, bf16"):
        RunConfig.flat(precision="fp16")


def test_a_bf16_run_keeps_fp32_adapters_scores_in_fp32_and_records_why(tiny_bert_dir, squad_dir, tmp_path):
    run_dir = tmp_path / "bf16"
    bf16 = train(tiny_run_config(tiny_bert_dir, squad_dir, run_dir, "lora", precision="bf16"), log=lambda _: None)
    fp32 = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "fp32", "lora"), log=lambda _: None)
    assert bf16["history"][0]["train_loss"] != fp32["history"][0]["train_loss"]  # the steps ran in bf16
    recorded = files.read_json(run_dir / run_folder.RUN_JSON)["levers"]["precision"]
    assert recorded["setting"] == "bf16" and recorded["used"] == "bf16"
    adapter = {k: v for f in (run_dir / "adapter").rglob("*.safetensors") for k, v in load_file(f).items()}
    assert adapter and all(tensor.dtype == torch.float32 for tensor in adapter.values())
    # The run's last evaluation was fp32: reloading and scoring again in fp32 gives the same numbers.
    again = evaluate_run(run_dir)
    assert (again["exact_match"], again["f1"]) == (bf16["exact_match"], bf16["f1"])
    assert again["eval_loss"] == pytest.approx(bf16["eval_loss"], abs=1e-6)


def test_a_method_that_lost_f1_in_bf16_stays_fp32_under_auto_but_not_when_bf16_is_asked_for():
    from peftqa.training.levers import SpeedLevers

    keep = "its sweep chose another rate"
    assert not resolve_precision("auto", CPU, ZEN4, fp32_under_auto=keep).bf16
    assert keep in resolve_precision("auto", torch.device("cuda"), fp32_under_auto=keep).why
    assert resolve_precision("bf16", CPU, ZEN4, fp32_under_auto=keep).bf16
    full = SpeedLevers.resolve(RunConfig.flat(method="full"), torch.device("cuda"), lambda _: None)
    assert not full.precision.bf16 and "fp32" in full.precision.why
    assert SpeedLevers.resolve(RunConfig.flat(method="lora"), torch.device("cuda"), lambda _: None).precision.bf16
