"""Sweeps on a tiny random BERT: grid, best by F1, edge warning, resume, --lr from:SWEEP_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftqa import sweep as sweep_module
from peftqa.cli import build_parser, config_from_args
from peftqa.config import RunConfig
from peftqa.errors import PeftqaError
from peftqa.sweep import SweepConfig, edge_warnings, pick_best, resolve_lr, run_sweep


def _sweep_config(model_dir, squad_dir, out, **overrides) -> SweepConfig:
    base = RunConfig(
        method="lora",
        model=str(model_dir),
        data_dir=str(squad_dir),
        max_length=128,
        doc_stride=32,
        batch_size=4,
        eval_batch_size=8,
        method_options={"lora_r": 2},
    )
    values = dict(base=base, lrs=[1e-3, 1e-2], train_fraction=1.0, epochs=1, eval_limit=None, output_dir=str(out))
    values.update(overrides)
    return SweepConfig(**values)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask() of the "killed" trial
def test_grid_sweep_writes_summary_resumes_and_feeds_train(tiny_bert_dir, squad_dir, tmp_path):
    out = tmp_path / "sweep"
    config = _sweep_config(tiny_bert_dir, squad_dir, out, lrs=[1e-3], ranks=[2, 4])

    # A trial killed mid-run stays RUNNING in the database: the next run must redo its point.
    study = sweep_module.open_study(config)
    killed = study.ask()
    killed.suggest_float("lr", 1e-3, 1e-3, log=True)
    killed.suggest_int("lora_r", 2, 4)

    summary = run_sweep(config, log=lambda line: None)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["best"] == summary["best"] and (out / "sweep.png").stat().st_size > 0
    complete = [t for t in saved["trials"] if t["state"] == "COMPLETE"]
    assert sorted((t["params"]["lr"], t["params"]["lora_r"]) for t in complete) == [(1e-3, 2), (1e-3, 4)]
    assert any(t["state"] == "FAIL" for t in saved["trials"])
    assert all(Path(t["run_dir"], "metrics.json").is_file() for t in complete)
    assert saved["best_by_dev_loss"]["dev_loss"] == min(t["dev_loss"] for t in complete)
    assert saved["edge_warnings"], "a best value on a two-point grid is always on its edge"

    # Re-running a finished sweep trains nothing more.
    again = run_sweep(config, log=lambda line: None)
    assert len(again["trials"]) == len(saved["trials"])

    args = build_parser().parse_args(["train", "--method", "lora", "--lr", f"from:{out}"])
    assert config_from_args(args).lr == summary["best"]["params"]["lr"]


def test_best_is_highest_f1_then_em():
    rows = [
        {"state": "COMPLETE", "f1": 50.0, "exact_match": 40.0, "params": {"lr": 1e-4}},
        {"state": "COMPLETE", "f1": 50.0, "exact_match": 45.0, "params": {"lr": 3e-4}},
        {"state": "PRUNED", "f1": 90.0, "exact_match": 90.0, "params": {"lr": 1e-3}},
    ]
    best = pick_best(rows)
    assert best["params"]["lr"] == 3e-4
    assert edge_warnings(best, {"lr": [1e-4, 3e-4, 1e-3]}) == []
    assert "upward" in edge_warnings(rows[2], {"lr": [1e-4, 3e-4, 1e-3]})[0]


def test_epoch_scores_report_to_optuna_and_prune():
    import optuna

    class FakeTrial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    on_epoch = sweep_module._pruning_hook(FakeTrial(), last_epoch=2)
    with pytest.raises(optuna.TrialPruned, match="F1 12.50 after epoch 1"):
        on_epoch({"epoch": 1, "f1": 12.5, "exact_match": 10.0})
    on_epoch({"epoch": 2, "f1": 22.5, "exact_match": 20.0})  # the last epoch is kept
    assert FakeTrial.reported == [(1, 12.5), (2, 22.5)]


def test_bad_sweep_input_is_a_peftqa_error(tmp_path):
    with pytest.raises(PeftqaError, match="no rank option"):
        SweepConfig(base=RunConfig(method="ia3"), ranks=[4])
    with pytest.raises(PeftqaError, match="n-trials"):
        SweepConfig(base=RunConfig(), sampler="tpe")
    with pytest.raises(PeftqaError, match="no sweep.json"):
        resolve_lr(f"from:{tmp_path}")
    with pytest.raises(PeftqaError, match="from:SWEEP_DIR"):
        resolve_lr("fast")


def test_edge_best_extends_the_grid_outward():
    assert sweep_module._extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 1e-3}}) == [1e-4, 3e-4, 1e-3, 3.33e-3]
    assert sweep_module._extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 1e-4}})[0] == 3.33e-5
    assert sweep_module._extended_lrs([1e-4, 3e-4, 1e-3], {"params": {"lr": 3e-4}}) is None
