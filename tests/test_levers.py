"""The speed levers, checked on a CPU: bf16-frozen adapters save fp32 weights that reload to the same
predictions, full fine-tuning stays fp32, the fused LoRA forward computes peft's loss and gradients,
and which levers a CUDA run gets by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from peftqa import runs
from peftqa.backbone import load_qa_model, load_tokenizer
from peftqa.batches import collate
from peftqa.config import RunConfig
from peftqa.data import load_squad
from peftqa.errors import PeftqaError
from peftqa.features import build_features
from peftqa.levers import SpeedLevers
from peftqa.levers.fused_lora import fused_lora_forward
from peftqa.methods import get_method
from peftqa.predict import evaluate
from peftqa.train import train
from tests.conftest import tiny_run_config


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
    assert result.predictions == json.loads((tmp_path / "bf16" / runs.PREDICTIONS_JSON).read_text())
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
    with pytest.raises(PeftqaError, match="fused_lora must be one of auto, on, off"):
        RunConfig(fused_lora="yes")
    with pytest.raises(PeftqaError, match="log_every_steps must be positive"):
        RunConfig(log_every_steps=0)


def test_a_cuda_run_gets_the_fused_lora_forward_but_not_bf16_frozen_weights_unless_asked():
    cuda = torch.device("cuda")  # resolving reads only the device's type: no GPU needed
    lines: list[str] = []
    assert SpeedLevers.resolve(RunConfig(method="lora"), cuda, lines.append) == SpeedLevers(False, True)
    assert lines == ["training levers on: fused_lora"]
    forced = SpeedLevers.resolve(RunConfig(method="lora", frozen_bf16="auto"), cuda, _quiet)
    assert forced == SpeedLevers(True, True) and forced.autocast is True
    assert SpeedLevers.resolve(RunConfig(method="lora"), torch.device("cpu"), _quiet) == SpeedLevers(False, False)


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
    assert result.predictions == json.loads((tmp_path / "run" / runs.PREDICTIONS_JSON).read_text())
    assert result.metrics["f1"] == pytest.approx(metrics["f1"])
