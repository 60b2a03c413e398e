"""Checkpoints: what --resume restores, and what it refuses."""

from __future__ import annotations

import pytest
import torch

from peftqa.errors import PeftqaError
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model
from peftqa.settings.run_config import RunConfig
from peftqa.training.checkpoint import LastEvaluation, Progress, checkpoint_path, load_checkpoint, save_checkpoint
from peftqa.training.prepare import build_optimizer


def _trainable_model(model_dir, method: str = "lora"):
    spec = get_method(method)
    return spec.apply(load_qa_model(str(model_dir)), spec.make_options({}))


def _optimizer(model):
    return build_optimizer(model, RunConfig.flat(lr=1e-3), total_steps=10)


def test_checkpoint_restores_the_trainable_tensors(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    optimizer, scheduler = _optimizer(model)
    save_checkpoint(tmp_path, model, optimizer, scheduler, Progress(step=3))
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    fresh = _trainable_model(tiny_bert_dir)
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.add_(1.0)
    assert load_checkpoint(tmp_path, fresh, *_optimizer(fresh)) == Progress(step=3)
    restored = dict(fresh.named_parameters())
    assert all(torch.equal(restored[name], tensor) for name, tensor in saved.items())


def test_a_checkpoint_missing_a_trainable_tensor_is_refused(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    save_checkpoint(tmp_path, model, *_optimizer(model), Progress(step=1))
    state = torch.load(checkpoint_path(tmp_path), weights_only=True)
    dropped = sorted(state["trainable"])[0]
    del state["trainable"][dropped]
    torch.save(state, checkpoint_path(tmp_path))
    with pytest.raises(PeftqaError, match="does not match this model"):
        load_checkpoint(tmp_path, model, *_optimizer(model))


def test_a_checkpoint_of_another_method_is_refused(tiny_bert_dir, tmp_path):
    lora = _trainable_model(tiny_bert_dir, "lora")
    save_checkpoint(tmp_path, lora, *_optimizer(lora), Progress(step=1))
    ia3 = _trainable_model(tiny_bert_dir, "ia3")
    with pytest.raises(PeftqaError, match="does not match this model"):
        load_checkpoint(tmp_path, ia3, *_optimizer(ia3))


@pytest.mark.parametrize("damage", ["cut", "garbage", "a list"])
def test_a_damaged_checkpoint_is_one_line(tiny_bert_dir, tmp_path, damage):
    model = _trainable_model(tiny_bert_dir)
    save_checkpoint(tmp_path, model, *_optimizer(model), Progress(step=1))
    path = checkpoint_path(tmp_path)
    if damage == "cut":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"garbage" * 20)
    else:
        torch.save([1, 2], path)
    with pytest.raises(PeftqaError, match="cannot read the checkpoint .*; remove checkpoint/") as error:
        load_checkpoint(tmp_path, model, *_optimizer(model))
    assert len(str(error.value).splitlines()) == 1


class _RunsCode:
    """Pickles as a call of Path.touch: what a crafted checkpoint file could run when unpickled in full."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    save_checkpoint(tmp_path, model, *_optimizer(model), Progress(step=1))
    state = torch.load(checkpoint_path(tmp_path), weights_only=True)
    marker = tmp_path / "ran"
    torch.save({**state, "progress": _RunsCode(marker)}, checkpoint_path(tmp_path))
    with pytest.raises(PeftqaError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path, model, *_optimizer(model))
    assert not marker.exists()  # only tensors and plain containers are unpickled


def test_no_checkpoint_means_nothing_to_restore(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    assert load_checkpoint(tmp_path, model, *_optimizer(model)) is None


def test_the_progress_comes_back_exactly_with_its_last_evaluation(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    last = LastEvaluation({"q1": "Paris"}, {"q1": {"exact_match": 100.0, "f1": 100.0}}, {"f1": [90.0, 100.0]}, 1.5, 4.0)
    entry = {"epoch": 1, "step": 2, "train_loss": 5.25, "eval_loss": 5.5, "exact_match": 100.0, "f1": 100.0}
    progress = Progress(2, [entry], [5.5, 5.0], 0.75, 4, 321, last)
    save_checkpoint(tmp_path, model, *_optimizer(model), progress)
    restored = load_checkpoint(tmp_path, model, *_optimizer(model))
    assert restored == progress and isinstance(restored.last_eval, LastEvaluation)
    assert restored is not progress and restored.step_losses is not progress.step_losses


def test_a_checkpoint_whose_optimiser_was_grouped_otherwise_is_refused_in_one_line(tiny_bert_dir, tmp_path):
    model = _trainable_model(tiny_bert_dir)
    # The head at the method's rate: two groups (decayed or not); at its own rate: four.
    save_checkpoint(
        tmp_path, model, *build_optimizer(model, RunConfig.flat(lr=1e-3, head_lr=1e-3), 10), Progress(step=1)
    )
    with pytest.raises(PeftqaError, match="optimiser state does not match this run's parameter groups"):
        load_checkpoint(tmp_path, model, *build_optimizer(model, RunConfig.flat(lr=1e-3, head_lr=1e-2), 10))


def test_a_run_from_before_the_head_had_its_own_rate_resumes_only_at_the_rate_its_head_had(tmp_path):
    from peftqa import files
    from peftqa.training.checkpoint import check_same_settings

    config = RunConfig.flat(method="lora", lr=1e-2, output_dir=str(tmp_path))
    older = {name: value for name, value in config.to_dict().items() if name != "head_lr"}
    files.write_json_atomic(tmp_path / "run.json", {"config": older, "learning_rate": 1e-2})
    with pytest.raises(PeftqaError, match=r"head_lr: 0.01 -> None"):
        check_same_settings(tmp_path, config)
    check_same_settings(tmp_path, config.replace(head_lr=1e-2))
