"""Every registered method on tiny random DistilBERT and BERT: what trains, what it costs, save -> load.

Parametrised over the whole registry, so a new method is checked as soon as it registers itself.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from peftqa.methods import METHODS, get_method
from peftqa.methods.lora import LoraOptions
from peftqa.methods.targets import ALL_LINEAR, VERA_TARGETS
from peftqa.model.backbone import load_qa_model
from tests.helpers import method_options, random_batch, trained_two_steps

HEAD = r"qa_outputs"
# Bottleneck adapters per encoder layer: Houlsby's after attention and feed-forward, the others one.
BOTTLENECK_ADAPTERS_PER_LAYER = {"houlsby": 2, "pfeiffer": 1, "parallel": 1}


def _linear_layers(model, names) -> list[torch.nn.Linear]:
    return [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in names]


def _expected_trainable(method: str, base) -> int | None:
    """The count each method's paper claims, computed from the base model's layers."""
    head = sum(p.numel() for p in base.qa_outputs.parameters())
    model_type = base.config.model_type
    if method in ("lora", "rslora", "dora"):
        r = LoraOptions().lora_r
        layers = _linear_layers(base.base_model, ALL_LINEAR[model_type])
        magnitude = sum(m.out_features for m in layers) if method == "dora" else 0
        return head + sum(r * (m.in_features + m.out_features) for m in layers) + magnitude
    if method == "vera":
        r = get_method("vera").options_cls().vera_r
        layers = _linear_layers(base.base_model, VERA_TARGETS[model_type])
        return head + sum(r + m.out_features for m in layers)
    if method == "bitfit":
        return head + sum(p.numel() for n, p in base.base_model.named_parameters() if n.endswith(".bias"))
    if method == "head":
        return head
    if method == "full":
        return sum(p.numel() for p in base.parameters())
    if method in BOTTLENECK_ADAPTERS_PER_LAYER:
        size = base.config.hidden_size  # DistilBERT's config names its `dim` so too
        bottleneck = size // get_method(method).options_cls().reduction_factor
        adapters = BOTTLENECK_ADAPTERS_PER_LAYER[method] * base.config.num_hidden_layers
        return head + adapters * (2 * size * bottleneck + bottleneck + size)
    return None  # (IA)3: checked by name only


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_only_its_parameters_and_reloads(method, tiny_model_dir, tmp_path):
    spec = get_method(method)
    base = load_qa_model(str(tiny_model_dir))
    expected = _expected_trainable(method, base)
    torch.manual_seed(0)
    model = spec.apply(base, method_options(spec))

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    pattern = re.compile(f"{spec.trained_names}|{HEAD}")
    assert trainable and all(pattern.search(name) for name in trainable), sorted(trainable)[:5]
    assert any(HEAD in name for name in trainable), "the QA head must train"
    if expected is not None:
        assert sum(p.numel() for p in trainable.values()) == expected

    # One forward/backward/step, so the saved weights differ from a fresh initialisation.
    model.train()
    loss = model(**random_batch()).loss
    loss.backward()
    assert all(p.grad is not None for p in trainable.values())
    torch.optim.SGD(trainable.values(), lr=0.1).step()
    model.eval()
    with torch.no_grad():
        before = model(**random_batch(1))

    spec.save(model, tmp_path)
    assert (tmp_path / spec.artifact).is_dir()
    torch.manual_seed(123)  # a different random head on the fresh base: the saved one must replace it
    reloaded = spec.load(load_qa_model(str(tiny_model_dir)), tmp_path)
    with torch.no_grad():
        after = reloaded(**random_batch(1))
    torch.testing.assert_close(after.start_logits, before.start_logits)
    torch.testing.assert_close(after.end_logits, before.end_logits)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_options_round_trip(method):
    spec = get_method(method)
    options = method_options(spec)
    assert spec.make_options(dataclasses.asdict(options)) == options
    assert spec.default_lr > 0 and spec.description


def test_bitfit_rejects_weights_of_another_model(tiny_bert_dir, tiny_distilbert_dir, tmp_path):
    spec = get_method("bitfit")
    spec.save(spec.apply(load_qa_model(str(tiny_bert_dir)), method_options(spec)), tmp_path)
    with pytest.raises(ValueError, match="does not match"):
        spec.load(load_qa_model(str(tiny_distilbert_dir)), tmp_path)


def test_trainable_parameters_are_the_adapter_and_the_qa_head(tiny_bert_dir):
    for method in ("lora", "ia3"):
        spec = get_method(method)
        model = spec.apply(load_qa_model(str(tiny_bert_dir)), method_options(spec))
        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(("qa_outputs" in n) or (f"{method}_" in n) for n in trainable)
        assert any("qa_outputs" in n for n in trainable)
        batch = {"input_ids": torch.tensor([[101, 2054, 102, 3000, 102]]), "start_positions": torch.tensor([3])}
        model(**batch, end_positions=torch.tensor([3])).loss.backward()
        # Gradients reach every trainable parameter, finite, and no frozen one.
        grads = {name: p.grad for name, p in model.named_parameters()}
        assert {name for name, grad in grads.items() if grad is not None} == set(trainable)
        assert all(torch.isfinite(grads[name]).all() for name in trainable)
        # Not every one is non-zero by design: LoRA's A gets none while B starts at zero, and the QA head's
        # bias shifts every logit of a softmax alike. The adapter and the head's weight must learn, though.
        assert any(grads[name].abs().sum() > 0 for name in trainable if f"{method}_" in name)
        assert any(grads[name].abs().sum() > 0 for name in trainable if "qa_outputs" in name and "weight" in name)


@pytest.fixture(scope="module")
def shaped_models():
    """One random model per counted shape, built once; each test gets a copy."""
    from tests.method_shapes import shaped_model

    return {}, shaped_model


@pytest.mark.parametrize("shape", ["distilbert", "minilm-l6"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_stated_trainable_params_are_what_the_model_reports(method, shape, shaped_models):
    import copy

    from peftqa.methods.registry import COUNTED_ON
    from tests.method_shapes import trainable_count

    cache, build = shaped_models
    if shape not in cache:
        cache[shape] = build(shape)
        assert sum(p.numel() for p in cache[shape].parameters()) == COUNTED_ON[shape]
    spec = get_method(method)
    model = spec.apply(copy.deepcopy(cache[shape]), method_options(spec))
    assert trainable_count(model) == spec.trainable_params[shape]


@pytest.mark.parametrize("method", sorted(m for m in METHODS if METHODS[m].starts_as_base))
def test_methods_that_start_as_the_base_model_do(method, tiny_model_dir):
    spec = get_method(method)
    torch.manual_seed(0)  # the same random QA head on both models
    base = load_qa_model(str(tiny_model_dir)).eval()
    with torch.no_grad():
        expected = base(**random_batch(2))
    torch.manual_seed(0)
    model = spec.apply(load_qa_model(str(tiny_model_dir)), method_options(spec)).eval()
    with torch.no_grad():
        got = model(**random_batch(2))
    torch.testing.assert_close(got.start_logits, expected.start_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.end_logits, expected.end_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", sorted(m for m in METHODS if METHODS[m].merges))
def test_mergeable_methods_merge_into_plain_weights(method, tiny_model_dir):
    from peftqa.export.verify import merge_model

    model = trained_two_steps(get_method(method), tiny_model_dir)
    with torch.no_grad():
        before = model(**random_batch(3))
        merged = merge_model(model)
        after = merged(**random_batch(3))
    assert not any("base_layer" in name for name, _ in merged.named_modules())
    torch.testing.assert_close(after.start_logits, before.start_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(after.end_logits, before.end_logits, atol=1e-4, rtol=0)


def _out_of_range_options(spec) -> list[str]:
    """`--name=value` outside each whole-number option (sizes, ranks, counts: -1) and each option whose
    field declares a range (-1; 0 where -1 means something, as LoKr's factor)."""
    import typing

    hints = typing.get_type_hints(spec.options_cls)
    fields = dataclasses.fields(spec.options_cls)
    cases = []
    for f in fields:
        if hints[f.name] is int or "range" in f.metadata:
            allowed = f.metadata.get("range")
            bad = 0 if allowed is not None and allowed.holds(-1) else -1
            cases.append(f"--{f.name.replace('_', '-')}={bad:g}")
    return cases


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bad_options_exit_2_with_one_line(method, capsys):
    """Every whole-number option (ranks, sizes, counts) and every scale with a range refuses a value out
    of its range, and another method's option is refused, before any model is loaded (the model named
    here does not exist)."""
    from peftqa.cli.commands import main

    spec = get_method(method)
    foreign = next(
        f.name
        for other in METHODS.values()
        for f in dataclasses.fields(other.options_cls)
        if f.name not in {g.name for g in dataclasses.fields(spec.options_cls)}
    )
    cases = [[f"--{foreign.replace('_', '-')}", "4"], *([case] for case in _out_of_range_options(spec))]
    for extra in cases:
        code = main(["train", "--method", method, "--model", "/no/such/model", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("peftqa: error: "), (extra, err)
        assert "cannot load model" not in err[0], (extra, err)


def test_methods_command_lists_every_method_with_its_stated_costs(capsys):
    from peftqa.cli.commands import main

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines[2:]}
    assert set(by_name) == set(METHODS)
    for name, spec in METHODS.items():
        assert f"{spec.trainable_params['minilm-l6']:,} (" in by_name[name]
        assert ("no (onnx only)" in by_name[name]) == (not spec.merges)
    # Sorted by what they train on MiniLM-L6, so the cheapest come first.
    counts = [METHODS[line.split()[0]].trainable_params["minilm-l6"] for line in lines[2:]]
    assert counts == sorted(counts)


@pytest.mark.parametrize("method", sorted(m for m in METHODS if not METHODS[m].merges))
def test_methods_that_cannot_merge_refuse_an_hf_export_in_one_line(method, tmp_path, capsys):
    """Refused from run.json alone, before any model loads or anything is written (the run's weights here
    are empty folders, and its base model does not exist)."""
    import json

    from peftqa.cli.commands import main
    from peftqa.inference import run_folder

    run_dir = tmp_path / "run"
    for folder in (get_method(method).artifact, run_folder.TOKENIZER_DIR):
        (run_dir / folder).mkdir(parents=True)
    settings = {"config": {"method": method, "model": "/no/such/model"}, "base_model_path": "/no/such/model"}
    (run_dir / run_folder.RUN_JSON).write_text(json.dumps(settings))
    code = main(["export", str(run_dir), "--out", str(tmp_path / "out"), "--format", "hf"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (
        f"peftqa: error: {method} adapters cannot be merged into the base weights; "
        "export with --format onnx (a traced graph)"
    )
    assert not (tmp_path / "out").exists()
