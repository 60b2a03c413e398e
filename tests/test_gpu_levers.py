"""The GPU levers of issue 11, checked on a CPU: no host reads in the step loop, batches gathered on
the device equal `collate`'s, bf16-frozen adapters reload to the same predictions, the fused LoRA
forward computes peft's loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import peftqa.train as train_module
from peftqa import runs
from peftqa.backbone import load_qa_model, load_tokenizer
from peftqa.data import load_squad
from peftqa.device_batches import DeviceFeatures, model_inputs, uses_sdpa
from peftqa.errors import PeftqaError
from peftqa.features import build_features
from peftqa.methods import get_method
from peftqa.methods.fused_lora import fused_lora_forward
from peftqa.parallel import widen
from peftqa.predict import collate, evaluate
from peftqa.train import length_grouped_batches, train
from tests.conftest import tiny_run_config

# Tensor methods that move a value to the host (each waits for the device on a GPU).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")


def _quiet(_line: str) -> None:
    pass


def _count_host_reads_in_steps(monkeypatch, config) -> tuple[int, dict]:
    """Train `config`, counting host reads made by the step loop (not by evaluation or checkpoints)."""
    state = {"on": False, "count": 0}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            if state["on"]:
                state["count"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))

    def paused(function):
        def wrapper(*args, **kwargs):
            was, state["on"] = state["on"], False
            try:
                return function(*args, **kwargs)
            finally:
                state["on"] = was

        return wrapper

    def counted(function):
        def wrapper(*args, **kwargs):
            state["on"] = True
            try:
                return function(*args, **kwargs)
            finally:
                state["on"] = False

        return wrapper

    monkeypatch.setattr(train_module, "_fit", counted(train_module._fit))
    monkeypatch.setattr(train_module, "_end_epoch", paused(train_module._end_epoch))
    monkeypatch.setattr(train_module, "save_checkpoint", paused(train_module.save_checkpoint))
    metrics = train(config, log=_quiet)
    return state["count"], metrics


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_step_loop_reads_the_device_only_every_log_every_steps(
    tiny_bert_dir, squad_dir, tmp_path, monkeypatch, method
):
    # Batch 2 over the fixture's 6 features, 4 epochs: 12 steps; a read every 4 steps and at each epoch end.
    steps, log_every, epochs = 12, 4, 4
    settings = dict(batch_size=2, epochs=epochs, log_every_steps=log_every, checkpoint_every_steps=1000)
    paddings: list[bool] = []
    real_inputs = train_module.model_inputs

    def recording(batch, padded, sdpa):
        paddings.append(padded)
        return real_inputs(batch, padded, sdpa)

    monkeypatch.setattr(train_module, "model_inputs", recording)
    config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "sparse", method, **settings)
    reads, metrics = _count_host_reads_in_steps(monkeypatch, config)
    assert metrics["steps"] == steps
    assert 0 < reads <= steps // log_every + epochs
    assert True in paddings and False in paddings  # both kinds of batch went through the forward
    # Every step's real tokens are still counted (read from the device with the losses).
    _, features = _features(tiny_bert_dir, squad_dir)
    tokens = metrics["train_tokens_per_second"] * metrics["train_seconds"]
    assert tokens == pytest.approx(epochs * int(features.lengths.sum()))
    # The count is live: reading every step (as before issue 11) is seen as at least one read per step.
    every = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "every", method, **{**settings, "log_every_steps": 1})
    reads_every, _ = _count_host_reads_in_steps(monkeypatch, every)
    assert reads_every >= steps


def test_step_losses_are_the_same_whatever_log_every_steps(tiny_bert_dir, squad_dir, tmp_path):
    histories = []
    for log_every in (1, 5):
        config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / str(log_every), log_every_steps=log_every)
        histories.append(train(config, log=_quiet)["history"])
    assert histories[0] == histories[1]


def _features(model_dir, squad_dir):
    tokenizer = load_tokenizer(str(model_dir))
    features = build_features(load_squad(squad_dir / "train-v1.1.json"), tokenizer, 128, 32)
    return tokenizer, features


@pytest.mark.parametrize("segments", [True, False])
def test_batches_gathered_on_the_device_equal_collate(tiny_bert_dir, squad_dir, segments):
    import dataclasses

    tokenizer, features = _features(tiny_bert_dir, squad_dir)
    if not segments:  # a model without token types (DistilBERT)
        features = dataclasses.replace(features, token_type_ids=None)
    assert len(set(features.lengths)) > 1  # rows pad differently
    cpu = torch.device("cpu")
    source = DeviceFeatures(features, tokenizer.pad_token_id, cpu)
    batches = length_grouped_batches(features.lengths, 4, seed=1)
    assert len(batches[-1]) < 4 or len(batches[0]) < 4  # a short batch is among them
    for rows, device_rows in zip(batches, source.upload_rows(batches), strict=True):
        expected = collate(features, rows, tokenizer.pad_token_id, cpu)
        width = int(features.lengths[rows].max())
        for wider in (width, width + 7):  # several processes pad their shard as wide as the global batch
            gathered = source.batch(device_rows, wider)
            reference = widen(expected, wider, tokenizer.pad_token_id)
            assert list(gathered) == list(reference)
            for name, tensor in reference.items():
                assert gathered[name].dtype == tensor.dtype, name
                assert torch.equal(gathered[name], tensor), name


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_model_inputs_without_a_host_read_give_the_same_loss(tiny_bert_dir, tiny_distilbert_dir, squad_dir, kind):
    model_dir = tiny_bert_dir if kind == "bert" else tiny_distilbert_dir
    tokenizer, features = _features(model_dir, squad_dir)
    model = load_qa_model(str(model_dir), dropout=0.0).eval()
    assert uses_sdpa(model)
    order = np.argsort(features.lengths)
    padded_rows, same_length = order[:4], order[-1:]
    for rows, padded in ((padded_rows, True), (same_length, False)):
        batch = collate(features, rows, tokenizer.pad_token_id, torch.device("cpu"))
        if kind == "distilbert":
            batch.pop("token_type_ids")
        assert bool((batch["attention_mask"] == 0).any()) == padded
        with torch.no_grad():
            expected = model(**batch).loss
            got = model(**model_inputs(batch, padded, sdpa=True)).loss
        assert torch.equal(got, expected)


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
    assert result.loss == pytest.approx(forced["dev_loss"], abs=1e-6)


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
        assert fused["dev_loss"] == pytest.approx(eager["dev_loss"], abs=1e-5)


def test_lever_settings_are_checked():
    from peftqa.config import RunConfig

    with pytest.raises(PeftqaError, match="fused_lora must be one of auto, on, off"):
        RunConfig(fused_lora="yes")
    with pytest.raises(PeftqaError, match="log_every_steps must be positive"):
        RunConfig(log_every_steps=0)


def test_bench_gpu_smoke_runs_every_row_and_writes_its_table(tiny_bert_dir, squad_dir, tmp_path, capsys):
    from benchmarks import bench_gpu

    real_fit = train_module._fit
    out = tmp_path / "bench.json"
    flags = ["--smoke", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--out", str(out)]
    bench_gpu.main([*flags, "--max-length", "128", "--doc-stride", "32"])
    rows = json.loads(out.read_text())["rows"]
    # Baseline, the start, each lever, the larger batch, then one epoch at each end of the range.
    assert len(rows) == 2 + len(bench_gpu.LEVERS) + 1 + 2
    assert not [row["note"] for row in rows if row["note"].startswith("failed")]
    assert all(row["train_features_per_second"] > 0 and row["ms_per_step"] > 0 for row in rows)
    assert [row["f1"] is not None for row in rows] == [False] * 7 + [True, True]
    assert rows[1]["settings"] == bench_gpu.ALL_OFF and rows[5]["settings"] == bench_gpu.ALL_ON
    table = capsys.readouterr().out
    assert "GPU busy %" in table and "n/a |" in table  # no GPU here: no utilisation figure
    assert train_module._fit is real_fit  # the bench puts back what it wrapped


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_every_lever_trains_and_the_adapter_reloads_to_the_same_predictions(tiny_bert_dir, squad_dir, tmp_path):
    from peft import PeftModel

    lines: list[str] = []
    metrics = train(tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "run", "lora"), log=lines.append)
    assert any("training levers on: frozen_bf16, fused_lora" in line for line in lines)  # auto: on CUDA
    base = load_qa_model(str(tiny_bert_dir)).to("cuda")
    model = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval()
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    examples = load_squad(squad_dir / "dev-v1.1.json")
    result = evaluate(model, examples, build_features(examples, tokenizer, 128, 32), tokenizer.pad_token_id)
    assert result.predictions == json.loads((tmp_path / "run" / runs.PREDICTIONS_JSON).read_text())
    assert result.metrics["f1"] == pytest.approx(metrics["f1"])
