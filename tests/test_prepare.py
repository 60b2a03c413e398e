"""The optimiser a run builds: the QA head at its own rate, the method's tensors at theirs, decay only on
weight matrices, and the same groups every time (what --resume relies on)."""

from __future__ import annotations

import dataclasses

import pytest

from peftqa.methods import METHODS, get_method
from peftqa.methods.head import DEFAULT_HEAD_LR
from peftqa.methods.registry import is_qa_head
from peftqa.model.backbone import load_qa_model
from peftqa.settings.run_config import RunConfig
from peftqa.training.prepare import build_optimizer


def _model(model_dir, method: str):
    spec = get_method(method)
    return spec.apply(load_qa_model(str(model_dir)), spec.make_options(dict(spec.example_options or {})))


def _rates(model, config: RunConfig) -> dict[str, tuple[float, float]]:
    """Parameter name -> (peak rate, weight decay) of its optimiser group."""
    optimizer, _ = build_optimizer(model, config, total_steps=10)
    group_of = {id(p): (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    return {n: group_of[id(p)] for n, p in model.named_parameters() if p.requires_grad}


def test_the_qa_head_trains_at_its_own_rate_and_the_method_at_its_own(tiny_bert_dir):
    model = _model(tiny_bert_dir, "lora")
    rates = _rates(model, RunConfig.flat(method="lora", lr=0.05))
    head = {n: r for n, r in rates.items() if is_qa_head(n)}
    assert len(head) == 2 and {lr for lr, _ in head.values()} == {DEFAULT_HEAD_LR}
    assert {lr for n, (lr, _) in rates.items() if n not in head} == {0.05}
    rates = _rates(model, RunConfig.flat(method="lora", lr=0.05, head_lr=1e-4))
    assert {lr for n, (lr, _) in rates.items() if is_qa_head(n)} == {1e-4}
    # The head's weight is a matrix (decayed), its bias is not.
    assert sorted(decay for n, (_, decay) in rates.items() if is_qa_head(n)) == [0.0, 0.01]


def test_full_fine_tuning_keeps_one_rate_for_every_weight_unless_told(tiny_bert_dir):
    model = _model(tiny_bert_dir, "full")
    assert {lr for lr, _ in _rates(model, RunConfig.flat(method="full", lr=2e-4)).values()} == {2e-4}
    rates = _rates(model, RunConfig.flat(method="full", lr=2e-4, head_lr=1e-3))
    assert {lr for n, (lr, _) in rates.items() if is_qa_head(n)} == {1e-3}


def test_method_rate_scales_and_no_decay_patterns_apply_by_name(tiny_bert_dir, monkeypatch):
    spec = get_method("lora")
    changed = dataclasses.replace(spec, lr_scales={r"lora_B\.": 0.1}, no_decay=r"lora_A\.")
    monkeypatch.setitem(METHODS, "lora", changed)
    rates = _rates(_model(tiny_bert_dir, "lora"), RunConfig.flat(method="lora", lr=0.02, weight_decay=0.1))
    b_rates = {r for n, r in rates.items() if "lora_B." in n}
    a_rates = {r for n, r in rates.items() if "lora_A." in n}
    assert b_rates == {(0.02 * 0.1, 0.1)} and a_rates == {(0.02, 0.0)}


def test_the_groups_are_the_same_every_time_the_method_first_and_the_schedule_scales_each(tiny_bert_dir):
    config = RunConfig.flat(method="lora", lr=0.05, warmup_fraction=0.0)
    first, scheduler = build_optimizer(_model(tiny_bert_dir, "lora"), config, total_steps=10)
    second, _ = build_optimizer(_model(tiny_bert_dir, "lora"), config, total_steps=10)
    shape = lambda o: [(g["lr"], g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in o.param_groups]  # noqa: E731
    assert shape(first) == shape(second)
    assert first.param_groups[0]["lr"] == 0.05  # what tracking reports as the run's rate
    second.load_state_dict(first.state_dict())  # what --resume does
    first.step()
    scheduler.step()
    assert [g["lr"] for g in first.param_groups] == pytest.approx([g["initial_lr"] * 0.9 for g in first.param_groups])


def test_a_bad_head_rate_is_refused():
    from peftqa.errors import PeftqaError

    with pytest.raises(PeftqaError, match="--head-lr: must be a finite number > 0, got 0.0"):
        RunConfig.flat(head_lr=0.0)


def test_a_run_json_from_before_the_head_had_its_own_rate_reads_as_the_method_s_rate():
    from peftqa.settings.run_config import recorded_config

    old = {"config": {"method": "lora", "lr": None}, "learning_rate": 5e-3}
    assert recorded_config(old)["head_lr"] == 5e-3
    assert RunConfig.from_dict(recorded_config(old)).head_learning_rate == 5e-3
    # Full fine-tuning's head always trained at its one rate, as it still does.
    assert recorded_config({"config": {"method": "full"}, "learning_rate": 1e-4})["head_lr"] is None
    new = {"config": {"method": "lora", "head_lr": None}, "learning_rate": 5e-3}
    assert RunConfig.from_dict(recorded_config(new)).head_learning_rate == DEFAULT_HEAD_LR


@pytest.mark.parametrize(
    ("method", "pattern", "scale", "decayed"),
    [
        ("c3a", "c3a_kernel.", 1.0, False),  # circulant kernels at C3A's high rates
        ("ia3", "ia3_l.", 1.0, False),  # scale vectors that start at 1
        ("prompt_tuning", "prompt_encoder.default.embedding.", 1.0, False),
        ("p_tuning", "prompt_encoder.default.embedding.", 1.0, False),
        ("prefix", "prefix_encoder.", 1.0, False),
        ("vblora", "vblora_vector_bank.", 0.1, True),  # the bank at a tenth of the logits' rate
        ("vblora", "vblora_logits_", 1.0, True),
    ],
)
def test_each_method_s_own_rates_and_decay(tiny_bert_dir, method, pattern, scale, decayed):
    rates = _rates(_model(tiny_bert_dir, method), RunConfig.flat(method=method, lr=0.1, weight_decay=0.01))
    mine = {rate for name, rate in rates.items() if pattern in name}
    assert mine == {(0.1 * scale, 0.01 if decayed else 0.0)}, sorted(rates.items())[:4]
