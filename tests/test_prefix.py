"""Prefix tuning (methods/prefix.py): prefixes reach every layer's attention, padding stays masked, the
base model is untouched with none, and the adapter reloads, traces and trains as the other methods do."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.methods.prefix import CONFIG_FILE, PREFIX_TENSOR, WEIGHTS_FILE
from peftqa.model.backbone import load_qa_model
from tests.helpers import tiny_run_config

SPEC = get_method("prefix")


def _prefixed(model_dir, seed: int = 0, **options):
    torch.manual_seed(seed)
    return SPEC.apply(load_qa_model(str(model_dir)), SPEC.make_options(options)).eval()


def _logits(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        output = model(**inputs)
    return torch.stack([output.start_logits, output.end_logits])


def _ids(rows: int = 2, length: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(1000, 2000, (rows, length), generator=torch.Generator().manual_seed(seed))


def _trained_step(model):
    """One SGD step on every trainable tensor, so nothing saved is a fresh initialisation."""
    model.train()
    ids = _ids()
    model(input_ids=ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4])).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    return model.eval()


def test_zero_virtual_tokens_is_exactly_the_base_model(tiny_model_dir):
    ids = _ids()
    mask = torch.tensor([[1] * 16, [1] * 10 + [0] * 6])
    torch.manual_seed(0)
    base = load_qa_model(str(tiny_model_dir)).eval()
    model = _prefixed(tiny_model_dir, num_virtual_tokens=0)
    expected = _logits(base, input_ids=ids, attention_mask=mask)
    assert torch.equal(_logits(model, input_ids=ids, attention_mask=mask), expected)
    head = sum(p.numel() for p in model.qa_outputs.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == head


def test_default_prefixes_change_the_answer_and_keep_the_inputs_length(tiny_model_dir):
    ids = _ids()
    torch.manual_seed(0)
    base = _logits(load_qa_model(str(tiny_model_dir)).eval(), input_ids=ids)
    got = _logits(_prefixed(tiny_model_dir), input_ids=ids)
    assert got.shape == base.shape == (2, 2, 16)
    assert not torch.allclose(got, base, atol=1e-4)


def _tiny_roberta(tmp_path):
    from transformers import RobertaConfig, RobertaForQuestionAnswering

    config = RobertaConfig(
        vocab_size=2100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    RobertaForQuestionAnswering(config).save_pretrained(tmp_path / "roberta")
    return tmp_path / "roberta"


@pytest.mark.parametrize("mask_form", ["2-D", "4-D bool (the training loop's)", "eager"])
def test_a_padded_row_answers_as_that_row_alone(tiny_model_dir, mask_form):
    """The widened mask: prefix positions are attended, the padding of the real tokens is not."""
    model = _prefixed(tiny_model_dir, num_virtual_tokens=5)
    if mask_form == "eager":
        model.config._attn_implementation = "eager"  # an additive float mask; the prefix follows the model
    ids = _ids()
    mask = torch.tensor([[1] * 16, [1] * 9 + [0] * 7])
    batch_mask = mask.bool()[:, None, None, :] if mask_form.startswith("4-D") else mask
    together = _logits(model, input_ids=ids, attention_mask=batch_mask)
    alone = _logits(model, input_ids=ids[1:, :9])
    torch.testing.assert_close(together[:, 1, :9], alone[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[:, :1], _logits(model, input_ids=ids[:1]), atol=1e-5, rtol=1e-5)


def test_roberta_pads_correctly_and_mpnet_is_refused_in_one_line(tmp_path):
    from transformers import MPNetConfig, MPNetForQuestionAnswering

    model = _prefixed(_tiny_roberta(tmp_path), num_virtual_tokens=3)
    ids = _ids()
    together = _logits(model, input_ids=ids, attention_mask=torch.tensor([[1] * 16, [1] * 9 + [0] * 7]))
    torch.testing.assert_close(together[:, 1, :9], _logits(model, input_ids=ids[1:, :9])[:, 0], atol=1e-5, rtol=1e-5)
    mpnet = MPNetForQuestionAnswering(MPNetConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(PeftqaError, match="does not support 'mpnet'") as error:
        SPEC.apply(mpnet, SPEC.make_options({}))
    assert "\n" not in str(error.value)


def test_every_layers_prefix_reaches_the_answer(tiny_model_dir):
    model = _prefixed(tiny_model_dir, num_virtual_tokens=4)
    ids = _ids()
    before = _logits(model, input_ids=ids)
    key_values = model.prefix_encoder.key_values
    original = key_values.detach().clone()
    for layer in range(key_values.shape[0]):
        for part in (0, 1):  # keys, values
            with torch.no_grad():  # large: the tiny random model's queries and logits are small
                key_values[layer, part] = 5 * torch.randn_like(key_values[layer, part])
            # Far above float rounding (~1e-7 here): an unused prefix would leave the logits exactly equal.
            assert (_logits(model, input_ids=ids) - before).abs().max() > 1e-5, (layer, part)
            with torch.no_grad():
                key_values.copy_(original)
    assert torch.equal(_logits(model, input_ids=ids), before)


def test_other_models_in_the_process_are_untouched(tiny_bert_dir):
    ids = _ids()
    torch.manual_seed(0)
    other = load_qa_model(str(tiny_bert_dir)).eval()
    before = _logits(other, input_ids=ids)
    model = _prefixed(tiny_bert_dir)
    assert model.config._attn_implementation == other.config._attn_implementation == "sdpa"
    assert torch.equal(_logits(other, input_ids=ids), before)
    prefixed = _logits(model, input_ids=ids)
    assert not torch.allclose(prefixed, before, atol=1e-4)
    copied = copy.deepcopy(model)  # a copy keeps its prefixes, its own ones
    assert torch.equal(_logits(copied, input_ids=ids), prefixed)
    with torch.no_grad():
        copied.prefix_encoder.key_values.zero_()
    assert torch.equal(_logits(model, input_ids=ids), prefixed)


@pytest.mark.parametrize("projection", [False, True])
def test_reload_gives_the_same_logits_and_drops_the_mlp(tiny_model_dir, tmp_path, projection):
    model = _trained_step(_prefixed(tiny_model_dir, num_virtual_tokens=3, prefix_projection=projection))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".mlp." in n for n in names) == projection
    ids, mask = _ids(seed=1), torch.tensor([[1] * 16, [1] * 12 + [0] * 4])
    expected = _logits(model, input_ids=ids, attention_mask=mask)
    SPEC.save(model, tmp_path)

    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / WEIGHTS_FILE)
    assert set(saved) == {PREFIX_TENSOR, "qa_outputs.weight", "qa_outputs.bias"}
    assert json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())["num_virtual_tokens"] == 3
    torch.manual_seed(123)  # another random head on the fresh base: the saved one must replace it
    reloaded = SPEC.load(load_qa_model(str(tiny_model_dir)), tmp_path)
    assert not any(".mlp." in n for n, _ in reloaded.named_parameters())
    torch.testing.assert_close(_logits(reloaded, input_ids=ids, attention_mask=mask), expected)


def test_reload_refuses_prefixes_of_another_shape(tiny_bert_dir, tiny_distilbert_dir, tmp_path):
    SPEC.save(_prefixed(tiny_bert_dir, num_virtual_tokens=2), tmp_path)
    with pytest.raises(ValueError, match="does not match"):  # the same shape, another architecture
        SPEC.load(load_qa_model(str(tiny_distilbert_dir)), tmp_path)
    config = tmp_path / "adapter" / CONFIG_FILE
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_virtual_tokens": 3}))
    with pytest.raises(ValueError, match="does not match"):
        SPEC.load(load_qa_model(str(tiny_bert_dir)), tmp_path)


def test_bad_options_are_refused():
    for values, message in (({"num_virtual_tokens": -1}, ">= 0, got -1"), ({"prefix_hidden_size": 0}, ">= 1, got 0")):
        with pytest.raises(PeftqaError, match=message):
            SPEC.make_options(values)


def test_prefixes_work_in_bf16_autocast_with_and_without_fp32_attention(tiny_bert_without_dropout, monkeypatch):
    from peftqa.training.levers.fp32_attention import fp32_attention

    model = _prefixed(tiny_bert_without_dropout, num_virtual_tokens=4)
    ids, mask = _ids(), torch.tensor([[1] * 16, [1] * 9 + [0] * 7]).bool()[:, None, None, :]
    exact = _logits(model, input_ids=ids, attention_mask=mask)
    real, seen = torch.nn.functional.scaled_dot_product_attention, []

    def spy(query, key, *args, **kwargs):
        seen.append((query.dtype, key.shape[2]))
        return real(query, key, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = _logits(model, input_ids=ids, attention_mask=mask)
        with fp32_attention():
            lever = _logits(model, input_ids=ids, attention_mask=mask)
    # Two layers each time, every one with the 4 prefix keys before the 16 real ones.
    assert seen == [(torch.bfloat16, 20)] * 2 + [(torch.float32, 20)] * 2
    for got in (plain, lever):
        torch.testing.assert_close(got.float()[:, 0], exact[:, 0], atol=0.05, rtol=0)
        torch.testing.assert_close(got.float()[:, 1, :9], exact[:, 1, :9], atol=0.05, rtol=0)


def test_a_prefix_run_exports_to_onnx_with_the_runs_logits(tiny_model_dir, squad_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from peftqa.export import export_run
    from peftqa.export.verify import largest_difference, logits, probe_batch
    from peftqa.inference import run_folder
    from peftqa.settings.groups import ScoringSettings
    from peftqa.training.loop import train

    run_dir = tmp_path / "run"
    train(tiny_run_config(tiny_model_dir, squad_dir, run_dir, "prefix", max_steps=2), log=lambda line: None)
    info = export_run(run_dir, tmp_path / "onnx", "onnx", log=lambda line: None)
    assert info["verification"]["onnx_max_abs_logit_diff"] <= 1e-4
    onnx = pytest.importorskip("onnx")
    loaded = run_folder.load_run(run_dir)
    # Every layer's prefixes are in the graph, folded into one constant per layer (on a tiny random model,
    # leaving them out would move the logits little).
    prefixes = loaded.model.prefix_encoder.key_values.detach().numpy()
    graph = onnx.load(str(tmp_path / "onnx" / run_folder.ONNX_FILE)).graph
    constants = [onnx.numpy_helper.to_array(t) for t in graph.initializer if tuple(t.dims) == prefixes.shape[1:]]
    assert all(any(np.array_equal(constant, layer) for constant in constants) for layer in prefixes)
    session = onnxruntime.InferenceSession(
        str(tmp_path / "onnx" / run_folder.ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    names = [node.name for node in session.get_inputs()]
    for rows in (1, 3):  # other batch sizes and lengths than the trace: the axes stay dynamic
        batch = probe_batch(loaded.tokenizer, ScoringSettings(max_length=128, doc_stride=32), rows=rows)
        start, end = session.run(["start_logits", "end_logits"], {n: batch[n].numpy() for n in names})
        reference = logits(loaded.model, batch)
        assert start.shape == reference[0].shape
        assert largest_difference((start, end), reference, batch["attention_mask"].numpy()) <= 1e-4


def test_train_with_prefix_from_the_command_line(tiny_bert_dir, squad_dir, tmp_path, capsys):
    from peftqa.cli.commands import main

    run_dir = tmp_path / "run"
    common = ["--data-dir", str(squad_dir), "--max-length", "128", "--doc-stride", "32", "--batch-size", "4"]
    code = main(
        ["train", "--method", "prefix", "--model", str(tiny_bert_dir), "--max-steps", "2", "--num-virtual-tokens",
         "4", "--prefix-projection", "true", "--precision", "bf16", "--output-dir", str(run_dir), *common]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads((run_dir / "adapter" / CONFIG_FILE).read_text())["num_virtual_tokens"] == 4
    options = json.loads((run_dir / "run.json").read_text())["config"]["method_options"]
    assert options == {"num_virtual_tokens": 4, "prefix_projection": True}  # a switch, not a string
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["f1"]
    )


def test_importing_the_method_does_not_import_transformers():
    """Every command imports the methods: the attention function is registered at first use instead."""
    import subprocess
    import sys

    code = "import sys, peftqa.methods.prefix; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0
