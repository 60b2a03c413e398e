"""AdaLoRA (methods/adalora.py): its ranks are reallocated while a run trains, the allocation is saved and
reloaded exactly, and --resume continues it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from peftqa.errors import PeftqaError
from peftqa.methods import METHODS, adalora, get_method
from peftqa.model.backbone import load_qa_model
from peftqa.training.loop import TrainHooks, train
from tests.helpers import tiny_run_config

# 3 steps an epoch on the tiny SQuAD fixture (batch 2): 9 steps, reallocating at every step up to the
# final allocation in step 8 (index 7), then one step at it (tfinal 2).
RUN = dict(method="adalora", epochs=3, method_options={"adalora_delta_t": 1, "adalora_tfinal_fraction": 0.3})
BERT_LAYERS = 12  # 2 blocks x (query, key, value, attention output, intermediate, output)


def _quiet(_line: str) -> None:
    pass


def _rank_pattern(run_dir) -> dict[str, list[bool]]:
    return json.loads((run_dir / "adapter" / "adapter_config.json").read_text())["rank_pattern"]


class _Killed(BaseException):
    """Stands for kill -9 in the middle of a step: nothing after it runs, nothing more is saved."""


@pytest.fixture(scope="module")
def trained(tiny_bert_without_dropout, squad_dir, tmp_path_factory):
    """One uninterrupted run, the ranks after each of its steps, and its model at the end."""
    run_dir = tmp_path_factory.mktemp("adalora") / "run"
    seen: dict = {}

    def after_step(state):
        seen.setdefault("model", state.model)
        seen.setdefault("ranks", []).append(adalora.ranks(state.model))

    before = adalora.ranks(get_method("adalora").apply(load_qa_model(str(tiny_bert_without_dropout)), _options()))
    # Module-scoped, so set up before the autouse fixture that isolates the feature cache: isolate it here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PEFTQA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "peftqa-cache"))
        metrics = train(
            tiny_run_config(tiny_bert_without_dropout, squad_dir, run_dir, **RUN),
            log=_quiet,
            hooks=TrainHooks(after_step=after_step),
        )
    return {"run_dir": run_dir, "metrics": metrics, "before": before, **seen}


def _options(**values):
    return get_method("adalora").make_options({**RUN["method_options"], **values})


def test_the_budget_shrinks_from_init_r_to_target_r_and_is_reallocated_between_layers(trained):
    options = _options()
    assert options.initial_rank == 12 and options.adalora_target_r == 8
    assert list(trained["before"].values()) == [12] * BERT_LAYERS
    totals = [sum(step.values()) for step in trained["ranks"]]
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[3] > totals[-1], totals
    final = trained["ranks"][-1]
    assert sum(final.values()) == 8 * BERT_LAYERS
    # Reallocated, not cut evenly: some layers keep more than the target and some fewer.
    assert max(final.values()) > 8 > min(final.values()), final


def test_the_final_rank_pattern_is_saved_and_the_adapter_holds_only_the_kept_ranks(trained):
    run_dir = trained["run_dir"]
    pattern = _rank_pattern(run_dir)
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["total_step"] == trained["metrics"]["steps"] == 9 and config["tfinal"] == 2
    kept = {key.removesuffix(".lora_E"): sum(flags) for key, flags in pattern.items()}
    assert kept == trained["ranks"][-1]
    tensors = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    singular_values = {k: v for k, v in tensors.items() if ".lora_E" in k}
    assert len(singular_values) == BERT_LAYERS
    for name, values in singular_values.items():
        layer = name.removeprefix("base_model.model.").split(".lora_E")[0]
        assert values.shape == (kept[layer], 1), name


def test_the_reloaded_adapter_gives_the_trained_model_s_logits_with_the_pruned_ranks(
    trained, tiny_bert_without_dropout
):
    spec = get_method("adalora")
    model = trained["model"].eval()
    torch.manual_seed(123)  # another random head on the fresh base: the saved one must replace it
    reloaded = spec.load(load_qa_model(str(tiny_bert_without_dropout)), trained["run_dir"])
    sizes = {n.split(".lora_E")[0]: p.shape[0] for n, p in reloaded.named_parameters() if ".lora_E" in n}
    assert sorted(sizes.values()) == sorted(trained["ranks"][-1].values())
    batch = {"input_ids": torch.randint(1000, 2000, (2, 24), generator=torch.Generator().manual_seed(0))}
    batch["token_type_ids"] = (torch.arange(24) >= 10).long().expand(2, 24)
    with torch.no_grad():
        expected, got = model(**batch), reloaded(**batch)
    torch.testing.assert_close(got.start_logits, expected.start_logits)
    torch.testing.assert_close(got.end_logits, expected.end_logits)


def _interrupted_and_resumed(model_dir, squad_dir, run_dir) -> tuple[dict, list[dict[str, int]]]:
    """A run killed in step 5 and resumed: its metrics, and the ranks after each step of the resumed part."""

    def die_in_step_5(state):
        # A checkpoint every 2 steps and at each epoch's end: the last one on disk is step 4's, while
        # the budget is still shrinking.
        if state.progress.step == 5:
            raise _Killed

    config = tiny_run_config(model_dir, squad_dir, run_dir, **RUN)
    with pytest.raises(_Killed):
        train(config, log=_quiet, hooks=TrainHooks(after_step=die_in_step_5))
    lines: list[str] = []
    ranks: list[dict[str, int]] = []
    hooks = TrainHooks(after_step=lambda state: ranks.append(adalora.ranks(state.model)))
    metrics = train(config, resume=True, log=lines.append, hooks=hooks)
    assert "resumed from step 4 of 9" in lines
    return metrics, ranks


def test_a_resumed_run_continues_the_allocation(trained, tiny_bert_without_dropout, squad_dir, tmp_path):
    resumed, ranks = _interrupted_and_resumed(tiny_bert_without_dropout, squad_dir, tmp_path / "run")
    assert ranks == trained["ranks"][4:]
    assert _rank_pattern(tmp_path / "run") == _rank_pattern(trained["run_dir"])
    assert resumed["history"] == trained["metrics"]["history"]


def test_without_its_importance_scores_a_resumed_run_allocates_otherwise(
    trained, tiny_bert_without_dropout, squad_dir, tmp_path, monkeypatch
):
    """What the test above guards against: a checkpoint without the RankAllocator's state (on this tiny
    run the final ranks happen to agree, but not those along the way, nor the scores)."""
    spec = dataclasses.replace(METHODS["adalora"], training_state=None, restore_training_state=None)
    monkeypatch.setitem(METHODS, "adalora", spec)
    resumed, ranks = _interrupted_and_resumed(tiny_bert_without_dropout, squad_dir, tmp_path / "run")
    assert ranks != trained["ranks"][4:]
    assert resumed["history"] != trained["metrics"]["history"]


@pytest.mark.parametrize(
    ("total_steps", "expected"), [(1, (0, 0)), (2, (0, 1)), (9, (0, 1)), (100, (10, 20)), (1000, (100, 200))]
)
def test_the_schedule_leaves_a_final_step_and_a_step_to_reallocate_in(total_steps, expected):
    tinit, tfinal = adalora.schedule(total_steps, 0.1, 0.2)
    assert (tinit, tfinal) == expected
    assert total_steps == 1 or tinit < total_steps - tfinal


def test_the_orthogonal_regulariser_is_added_to_the_training_loss_only(tiny_bert_without_dropout):
    spec = get_method("adalora")
    batch = {
        "input_ids": torch.randint(1000, 2000, (2, 24), generator=torch.Generator().manual_seed(0)),
        "start_positions": torch.tensor([3, 5]),
        "end_positions": torch.tensor([4, 9]),
    }
    losses = {}
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        model = spec.apply(load_qa_model(str(tiny_bert_without_dropout)), _options(adalora_orth_reg_weight=weight))
        with torch.no_grad():
            losses[weight] = (model.train()(**batch).loss.item(), model.eval()(**batch).loss.item())
    # P and Q start random (std 0.02), far from orthogonal: the penalty is large.
    assert losses[0.5][0] > losses[0.0][0] + 1
    assert losses[0.5][1] == losses[0.0][1]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"adalora_init_r": -1}, "--adalora-init-r: must be a whole number >= 1"),
        ({"adalora_init_r": 8}, "must be above adalora_target_r"),
        ({"adalora_target_r": 0}, "--adalora-target-r: must be a whole number >= 1"),
        ({"adalora_tinit_fraction": 0.5, "adalora_tfinal_fraction": 0.5}, "must leave steps"),
        ({"adalora_orth_reg_weight": -1.0}, "at least 0"),
    ],
)
def test_bad_options_are_refused(values, message):
    with pytest.raises(PeftqaError, match=message):
        get_method("adalora").make_options(values)


def test_init_r_follows_the_target_rank_so_rank_sweeps_stay_valid():
    assert get_method("adalora").make_options({"adalora_target_r": 16}).initial_rank == 24
    assert get_method("adalora").make_options({"adalora_target_r": 16, "adalora_init_r": 20}).initial_rank == 20
