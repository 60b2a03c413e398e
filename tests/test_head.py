"""The head method, the floor: only the QA head trains, at the run's --lr, and its run is a run like any
other (saved, reloaded, exported, scored)."""

from __future__ import annotations

import pytest
import torch

from peftqa.cli.commands import main
from peftqa.methods.registry import is_qa_head, trains_only_the_head
from peftqa.model.backbone import load_qa_model
from peftqa.settings.run_config import RunConfig
from peftqa.training.loop import train
from peftqa.training.prepare import build_optimizer
from tests.helpers import tiny_run_config


def test_its_rate_is_the_head_s_and_a_head_rate_besides_is_refused_in_one_line(capsys):
    assert trains_only_the_head("head") and not trains_only_the_head("lora") and not trains_only_the_head("nope")
    assert RunConfig.flat(method="head", lr=0.02).head_learning_rate == 0.02
    assert main(["train", "--method", "head", "--head-lr", "0.01", "--model", "/no/such/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["peftqa: error: --head-lr does not apply to method 'head': its --lr is the QA head's rate"]


def test_a_head_run_changes_only_the_head_and_exports_and_scores_as_any_run(tiny_bert_dir, squad_dir, tmp_path):
    from peftqa.export import export_run
    from peftqa.inference import run_folder
    from peftqa.inference.rescore import evaluate_run

    config = tiny_run_config(tiny_bert_dir, squad_dir, tmp_path / "head", "head", max_steps=3, lr=0.05)
    metrics = train(config, log=lambda line: None)
    settings = run_folder.load_run(tmp_path / "head").settings
    assert settings["learning_rate"] == settings["head_learning_rate"] == 0.05
    assert metrics["trainable_params"] == sum(
        p.numel() for p in load_qa_model(str(tiny_bert_dir)).qa_outputs.parameters()
    )

    trained = run_folder.load_run(tmp_path / "head").model
    base = dict(load_qa_model(str(tiny_bert_dir)).named_parameters())
    for name, parameter in trained.named_parameters():
        assert torch.equal(parameter, base[name]) != is_qa_head(name), name  # the head moved, nothing else

    export_run(tmp_path / "head", tmp_path / "hf", "hf", log=lambda line: None)
    from transformers import AutoModelForQuestionAnswering

    exported = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(exported.qa_outputs.weight, trained.qa_outputs.weight)
    rescored = evaluate_run(tmp_path / "head")
    assert rescored["f1"] == pytest.approx(metrics["f1"])


def test_one_group_at_its_rate(tiny_bert_dir):
    from peftqa.methods import get_method

    spec = get_method("head")
    model = spec.apply(load_qa_model(str(tiny_bert_dir)), spec.make_options({}))
    optimizer, _ = build_optimizer(model, RunConfig.flat(method="head", lr=0.02), total_steps=4)
    assert {g["initial_lr"] for g in optimizer.param_groups} == {0.02}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2
