"""The speed levers, checked on a CPU: bf16-frozen adapters save fp32 weights that reload to the same
predictions, full fine-tuning stays fp32, the fused LoRA forward computes peft's loss and gradients,
and which levers a CUDA run gets by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.features.batches import collate
from peftqa.features.windows import build_features
from peftqa.inference import run_folder
from peftqa.inference.evaluate import evaluate
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model, load_tokenizer
from peftqa.settings.run_config import RunConfig
from peftqa.training.levers import SpeedLevers
from peftqa.training.levers.fused_lora import fused_lora_forward
from peftqa.training.loop import train
from tests.helpers import tiny_run_config


def _quiet(_line: str) -> None:
    pass


def _features(model_dir, squad_dir):
    tokenizer = load_tokenizer(str(model_dir))
    features = build_features(load_squad(squad_dir / "train-v1.1.json"), tokenizer, 128, 32)
    return tokenizer, features


def _adapter_tensors(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted((run_dir / "adapter").rglob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_bf16_frozen_weights_save_an_fp32_adapter_that_reloads_to_the_same_predictions(
    tiny_bert_dir, squad_dir, tmp_path, method
):
    from peft import PeftModel

    forced = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "bf16", method, frozen_bf16="on"), log=_quiet)
    plain = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "fp32", method), log=_quiet)
    assert forced["history"] != plain["history"]  # the lever was on: bf16 matmuls train a little differently
    saved, reference = _adapter_tensors(tmp_path / "bf16"), _adapter_tensors(tmp_path / "fp32")
    assert saved.keys() == reference.keys()
    assert all(tensor.dtype == torch.float32 for tensor in saved.values())

    # Plain peft on the fp32 base: the predictions the run wrote at its last evaluation.
    model = PeftModel.from_pretrained(load_qa_model(str(tiny_bert_dir)), tmp_path / "bf16" / "adapter").eval()
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    examples = load_squad(squad_dir / "dev-v1.1.json")
    result = evaluate(model, examples, build_features(examples, tokenizer, 128, 32), tokenizer.pad_token_id)
    assert result.predictions == json.loads((tmp_path / "bf16" / run_folder.PREDICTIONS_JSON).read_text())
    assert result.loss == pytest.approx(forced["eval_loss"], abs=1e-6)


def test_frozen_bf16_leaves_full_fine_tuning_in_fp32(tiny_bert_dir, squad_dir, tmp_path):
    lines: list[str] = []
    forced = train(
        tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "a", "full", epochs=1, frozen_bf16="on"),
        log=lines.append,
    )
    plain = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "b", "full", epochs=1), log=_quiet)
    assert forced["history"] == plain["history"]
    assert any("stay fp32" in line for line in lines)


@pytest.mark.parametrize("method", ["lora", "rslora"])
def test_fused_lora_forward_gives_peft_loss_and_gradients(tiny_bert_without_dropout, squad_dir, method):
    tokenizer, features = _features(tiny_bert_without_dropout, squad_dir)
    spec = get_method(method)
    torch.manual_seed(0)
    model = spec.apply(load_qa_model(str(tiny_bert_without_dropout)), spec.make_options({}))
    # Non-zero B (peft starts it at zero), so the low-rank path counts in the loss.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    batch = collate(features, np.arange(4), tokenizer.pad_token_id, torch.device("cpu"))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    eager_loss, eager_grads = loss_and_grads()
    with fused_lora_forward(model) as patched:
        fused_loss, fused_grads = loss_and_grads()
    assert patched == 12  # 2 layers x (query, key, value, attention output, intermediate, output)
    assert not any("forward" in vars(m) for m in model.modules())  # peft's forward is back
    assert fused_loss.item() == pytest.approx(eager_loss.item(), abs=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert torch.equal(loss_and_grads()[0], eager_loss)  # after the block: peft's forward again


def test_fused_lora_training_run_matches_eager(tiny_bert_dir, squad_dir, tmp_path):
    runs_ = {
        setting: train(
            tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / setting, "rslora", fused_lora=setting), log=_quiet
        )
        for setting in ("off", "on")
    }
    for eager, fused in zip(runs_["off"]["history"], runs_["on"]["history"], strict=True):
        assert fused["train_loss"] == pytest.approx(eager["train_loss"], abs=1e-5)
        assert fused["eval_loss"] == pytest.approx(eager["eval_loss"], abs=1e-5)


def test_lever_settings_are_checked():
    with pytest.raises(PeftqaError, match="--fused-lora: must be one of auto, on, off"):
        RunConfig.flat(fused_lora="yes")
    with pytest.raises(PeftqaError, match="--log-every-steps: must be a whole number >= 1"):
        RunConfig.flat(log_every_steps=0)


def test_a_cuda_run_gets_the_fused_lora_forward_but_not_bf16_frozen_weights_unless_asked():
    cuda = torch.device("cuda")  # resolving reads only the device's type: no GPU needed
    lines: list[str] = []
    levers = SpeedLevers.resolve(RunConfig.flat(method="lora"), cuda, lines.append)
    assert (levers.frozen_bf16, levers.fused_lora, levers.precision.bf16) == (False, True, True)
    assert lines == ["precision: bf16 (auto on CUDA)", "training levers on: fused_lora"]
    forced = SpeedLevers.resolve(RunConfig.flat(method="lora", frozen_bf16="auto", precision="fp32"), cuda, _quiet)
    assert (forced.frozen_bf16, forced.fused_lora) == (True, True) and forced.autocast is True  # bf16 frozen: bf16
    cpu = SpeedLevers.resolve(RunConfig.flat(method="lora", precision="fp32"), torch.device("cpu"), _quiet)
    assert (cpu.frozen_bf16, cpu.fused_lora, cpu.autocast) == (False, False, False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_every_lever_trains_and_the_adapter_reloads_to_the_same_predictions(tiny_bert_dir, squad_dir, tmp_path):
    from peft import PeftModel

    lines: list[str] = []
    config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", "lora", frozen_bf16="auto")
    metrics = train(config, log=lines.append)
    assert any("training levers on: frozen_bf16, fused_lora" in line for line in lines)  # auto: on CUDA
    base = load_qa_model(str(tiny_bert_dir)).to("cuda")
    model = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval()
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    examples = load_squad(squad_dir / "dev-v1.1.json")
    result = evaluate(model, examples, build_features(examples, tokenizer, 128, 32), tokenizer.pad_token_id)
    assert result.predictions == json.loads((tmp_path / "run" / run_folder.PREDICTIONS_JSON).read_text())
    assert result.metrics["f1"] == pytest.approx(metrics["f1"])


def test_fp32_attention_feeds_attention_fp32_under_bf16_autocast_and_puts_the_registry_back(
    tiny_bert_without_dropout, monkeypatch
):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from peftqa.training.levers.fp32_attention import fp32_attention

    model = load_qa_model(str(tiny_bert_without_dropout)).eval()
    inputs = {"input_ids": torch.randint(1000, 2000, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    real, seen = torch.nn.functional.scaled_dot_product_attention, []
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda q, *a, **k: seen.append(q.dtype) or real(q, *a, **k)
    )
    before = ALL_ATTENTION_FUNCTIONS["sdpa"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**inputs)
        with fp32_attention():
            lever = model(**inputs).start_logits
    assert seen == [torch.bfloat16] * 2 + [torch.float32] * 2  # two layers, without then with the lever
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before and "sdpa" not in ALL_ATTENTION_FUNCTIONS._local_mapping
    with torch.no_grad():
        exact = model(**inputs).start_logits
    assert lever.dtype == torch.bfloat16 and torch.allclose(lever.float(), exact, atol=0.05)


def test_bf16_on_a_cpu_keeps_attention_in_fp32():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert SpeedLevers.resolve(RunConfig.flat(precision="bf16"), cpu, _quiet).fp32_attention
    assert not SpeedLevers.resolve(RunConfig.flat(precision="fp32"), cpu, _quiet).fp32_attention
    assert not SpeedLevers.resolve(RunConfig.flat(precision="bf16"), cuda, _quiet).fp32_attention
