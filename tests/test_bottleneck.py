"""methods/bottleneck.py and its variants (houlsby, pfeiffer, parallel): where the adapters sit, what
they compute, what their options do, how a saved run is refused on another model, and a run through
the command line (`peftqa train`, then `peftqa evaluate` reproducing its scores).

The registry-wide checks (what trains, reload, identity at init, counts) are in test_methods.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.methods.bottleneck import BottleneckWrapped, FeedForwardInput, ParallelWrapped, SeqBnWrapped
from peftqa.model.backbone import load_qa_model

LAYERS = 2  # the tiny fixtures' encoder layers
# Where each variant's adapter modules sit, by the module path of the wrapped layer within a layer.
EXPECTED_SITES = {
    ("houlsby", "distilbert"): {"attention.out_lin": BottleneckWrapped, "ffn.lin2": BottleneckWrapped},
    ("houlsby", "bert"): {"attention.output.dense": BottleneckWrapped, "output.dense": BottleneckWrapped},
    ("pfeiffer", "distilbert"): {"ffn.lin1": FeedForwardInput, "ffn.lin2": SeqBnWrapped},
    ("pfeiffer", "bert"): {"intermediate.dense": FeedForwardInput, "output.dense": SeqBnWrapped},
    ("parallel", "distilbert"): {"ffn.lin1": FeedForwardInput, "ffn.lin2": ParallelWrapped},
    ("parallel", "bert"): {"intermediate.dense": FeedForwardInput, "output.dense": ParallelWrapped},
}
WRAPPERS = (BottleneckWrapped, FeedForwardInput, ParallelWrapped, SeqBnWrapped)


def _applied(method: str, model_dir, **options):
    spec = get_method(method)
    torch.manual_seed(0)
    return spec.apply(load_qa_model(str(model_dir)), spec.make_options(options))


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(1000, 2000, (2, 16), generator=generator)}


def _sites(model) -> dict[str, type]:
    """{path within its layer: wrapper type} of every wrapped module, each path checked to be in every layer."""
    found: dict[str, list[tuple[int, type]]] = {}
    for name, module in model.named_modules():
        if isinstance(module, WRAPPERS):
            head, _, within = name.partition(".layer.")
            index, _, relative = within.partition(".")
            found.setdefault(relative, []).append((int(index), type(module)))
    assert all(sorted(i for i, _ in places) == list(range(LAYERS)) for places in found.values()), found
    return {relative: places[0][1] for relative, places in found.items()}


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer", "parallel"])
@pytest.mark.parametrize("architecture", ["distilbert", "bert"])
def test_adapters_sit_where_each_variant_says(method, architecture, tiny_bert_dir, tiny_distilbert_dir):
    model_dir = tiny_distilbert_dir if architecture == "distilbert" else tiny_bert_dir
    model = _applied(method, model_dir)
    assert _sites(model) == EXPECTED_SITES[method, architecture]
    adapters = [name for name, _ in model.named_modules() if name.endswith(".adapter")]
    per_layer = 2 if method == "houlsby" else 1
    assert len(adapters) == per_layer * LAYERS
    # The wrapped layers keep the base's own tensors under the base's names: only adapters are new.
    base_names = {name for name, _ in load_qa_model(str(model_dir)).named_parameters()}
    names = {name for name, _ in model.named_parameters()}
    assert {name for name in names if ".adapter." not in name} == base_names


def test_parallel_adds_the_scaled_adapter_of_the_feed_forward_input(tiny_bert_dir):
    model = _applied("parallel", tiny_bert_dir, adapter_scaling=2.5).eval()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        layer.output.dense.adapter.up.weight.normal_()  # not zero, so the adapter shows
        block_input = torch.randn(1, 4, 32)
        hidden = layer.intermediate(block_input)
        got = layer.output.dense(hidden)
        adapter = layer.output.dense.adapter
        plain = torch.nn.functional.linear(hidden, layer.output.dense.weight, layer.output.dense.bias)
        expected = plain + 2.5 * adapter.up(adapter.non_linearity(adapter.down(block_input)))
    torch.testing.assert_close(got, expected)


def test_houlsby_adapter_adds_its_output_to_the_layers_output(tiny_distilbert_dir):
    model = _applied("houlsby", tiny_distilbert_dir, adapter_non_linearity="relu").eval()
    wrapped = model.distilbert.transformer.layer[1].ffn.lin2
    with torch.no_grad():
        wrapped.adapter.up.weight.normal_()
        hidden = torch.randn(1, 3, 64)
        plain = torch.nn.functional.linear(hidden, wrapped.weight, wrapped.bias)
        expected = plain + wrapped.adapter.up(torch.relu(wrapped.adapter.down(plain)))
        torch.testing.assert_close(wrapped(hidden), expected)


@pytest.mark.parametrize("architecture", ["distilbert", "bert"])
def test_pfeiffer_adapter_reads_the_normalised_residual_stream_as_adapterhub_s_seq_bn(
    architecture, tiny_bert_dir, tiny_distilbert_dir
):
    """The feed-forward block computes LN(h + A(LN(h + x)) + x): h its output, x its input, LN its own
    LayerNorm (AdapterHub's SeqBnConfig), not LN(h + A(h) + x), Houlsby's feed-forward adapter."""
    model = _applied("pfeiffer", tiny_distilbert_dir if architecture == "distilbert" else tiny_bert_dir).eval()
    x = torch.randn(1, 5, 32)
    with torch.no_grad():
        if architecture == "distilbert":
            layer = model.distilbert.transformer.layer[0]
            last, layer_norm = layer.ffn.lin2, layer.output_layer_norm
            hidden = layer.ffn.activation(torch.nn.functional.linear(x, layer.ffn.lin1.weight, layer.ffn.lin1.bias))
        else:
            layer = model.bert.encoder.layer[0]
            last, layer_norm = layer.output.dense, layer.output.LayerNorm
            hidden = layer.intermediate.intermediate_act_fn(layer.intermediate.dense.base(x))
        last.adapter.up.weight.normal_()  # not zero, so the adapter shows
        got = layer_norm(layer.ffn(x) + x) if architecture == "distilbert" else layer.output(layer.intermediate(x), x)
        h = torch.nn.functional.linear(hidden, last.weight, last.bias)
        adapter = last.adapter
        expected = layer_norm(h + adapter.up(torch.relu(adapter.down(layer_norm(h + x)))) + x)
        on_h_alone = layer_norm(h + adapter.up(torch.relu(adapter.down(h))) + x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, on_h_alone, atol=1e-4)
    # The block's LayerNorm is used, not copied: its parameters keep their one name.
    names = [name for name, _ in model.named_parameters() if "LayerNorm" in name or "layer_norm" in name]
    assert len(names) == len(set(names)) and not any(".adapter." in name for name in names)


def test_a_pfeiffer_run_saved_before_seq_bn_reloads_where_it_was_trained(tiny_bert_dir, tmp_path):
    spec = get_method("pfeiffer")
    spec.save(_applied("pfeiffer", tiny_bert_dir), tmp_path)
    described = json.loads((tmp_path / "adapter" / "bottleneck.json").read_text())
    assert described["sites"] == ["ffn_seq_bn"]
    del described["sites"]  # as peftqa wrote it before
    (tmp_path / "adapter" / "bottleneck.json").write_text(json.dumps(described))
    reloaded = spec.load(load_qa_model(str(tiny_bert_dir)), tmp_path)
    assert _sites(reloaded) == {"output.dense": BottleneckWrapped}


@pytest.mark.parametrize(("method", "default"), [("houlsby", torch.nn.SiLU), ("pfeiffer", torch.nn.ReLU)])
def test_non_linearity_option_is_applied(method, default, tiny_bert_dir):
    def kinds(model) -> set[type]:
        return {type(m.non_linearity) for name, m in model.named_modules() if name.endswith(".adapter")}

    assert kinds(_applied(method, tiny_bert_dir)) == {default}
    assert kinds(_applied(method, tiny_bert_dir, adapter_non_linearity="gelu")) == {torch.nn.GELU}
    with pytest.raises(PeftqaError, match="adapter_non_linearity must be one of relu, gelu, swish"):
        get_method(method).make_options({"adapter_non_linearity": "tanh"})


def test_reduction_factor_sets_the_bottleneck(tiny_bert_dir):
    model = _applied("houlsby", tiny_bert_dir, reduction_factor=4)
    sizes = {m.adapter.down.out_features for m in model.modules() if isinstance(m, BottleneckWrapped)}
    assert sizes == {32 // 4}
    # A factor above the hidden size still leaves one unit, as AdapterHub does.
    wide = _applied("houlsby", tiny_bert_dir, reduction_factor=1000)
    assert {m.adapter.down.out_features for m in wide.modules() if isinstance(m, BottleneckWrapped)} == {1}


def test_unknown_architecture_is_one_line(tiny_bert_dir):
    model = load_qa_model(str(tiny_bert_dir))
    model.config.model_type = "gpt2"
    spec = get_method("houlsby")
    with pytest.raises(PeftqaError, match=r"houlsby adapters have no placement for 'gpt2' models \(known: ") as error:
        spec.apply(model, spec.make_options({}))
    assert "\n" not in str(error.value)


def test_saved_adapters_refuse_another_model(tiny_bert_dir, tiny_distilbert_dir, tmp_path):
    spec = get_method("houlsby")
    spec.save(_applied("houlsby", tiny_bert_dir), tmp_path)
    assert json.loads((tmp_path / "adapter" / "bottleneck.json").read_text())["options"]["reduction_factor"] == 16
    with pytest.raises(ValueError, match="does not match this model"):
        spec.load(load_qa_model(str(tiny_distilbert_dir)), tmp_path)
    with pytest.raises(ValueError, match="holds 'houlsby' adapters, not pfeiffer"):
        get_method("pfeiffer").load(load_qa_model(str(tiny_bert_dir)), tmp_path)


def test_saved_options_are_the_ones_reloaded(tiny_bert_dir, tmp_path):
    """A run made with non-default options reloads with them, not with the defaults."""
    spec = get_method("parallel")
    model = _applied("parallel", tiny_bert_dir, reduction_factor=8, adapter_scaling=1.5)
    spec.save(model, tmp_path)
    reloaded = spec.load(load_qa_model(str(tiny_bert_dir)), tmp_path)
    wrapped = reloaded.bert.encoder.layer[0].output.dense
    assert (wrapped.adapter.down.out_features, wrapped.adapter.scaling) == (4, 1.5)


def test_train_then_evaluate_through_the_command_line(capsys, tmp_path, squad_dir, tiny_bert_dir):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train", "--method", "houlsby", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir),
            "--max-length", "128", "--doc-stride", "32", "--batch-size", "4", "--max-steps", "3",
            "--reduction-factor", "8", "--output-dir", str(run_dir),
        ]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["trainable_params"] == 2 * LAYERS * (2 * 32 * 4 + 4 + 32) + 2 * 32 + 2
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["exact_match"], again["f1"]) == pytest.approx((metrics["exact_match"], metrics["f1"]))


def test_parallel_scaling_must_be_positive():
    with pytest.raises(PeftqaError, match="--adapter-scaling: must be a finite number > 0"):
        get_method("parallel").make_options({"adapter_scaling": 0.0})


def test_parallel_adapters_are_as_wide_as_adapterhub_s_par_bn(tiny_bert_dir):
    """ParBnConfig's reduction factor is 2, not the sequential adapters' 16."""
    model = _applied("parallel", tiny_bert_dir)
    assert {m.adapter.down.out_features for m in model.modules() if isinstance(m, ParallelWrapped)} == {32 // 2}
