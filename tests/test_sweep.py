"""Sweeps on a tiny random BERT: grid, best by F1, edge warning, resume, --lr from:SWEEP_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftqa import files
from peftqa import sweep as sweep_module
from peftqa.cli.commands import build_parser, config_from_args
from peftqa.data import load_squad, split_articles
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder as runs
from peftqa.settings.run_config import RunConfig
from peftqa.sweep import SweepConfig, edge_warnings, pick_best, resolve_lr, run_sweep
from peftqa.sweep.trials import _pruning_hook
from tests.conftest import tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


def _sweep_config(model_dir, squad_dir, out, **overrides) -> SweepConfig:
    base = tiny_run_config(model_dir, squad_dir, None, batch_size=4, eval_batch_size=8, method_options={"lora_r": 2})
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
    # Each trial keeps its F1's interval over the held-out questions (the sweep plot draws it).
    assert all(t["f1_ci"][0] <= t["f1"] <= t["f1_ci"][1] for t in complete)
    assert saved["best_by_eval_loss"]["eval_loss"] == min(t["eval_loss"] for t in complete)
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

    after_epoch = _pruning_hook(FakeTrial(), last_epoch=2)
    with pytest.raises(optuna.TrialPruned, match="F1 12.50 after epoch 1"):
        after_epoch({"epoch": 1, "f1": 12.5, "exact_match": 10.0})
    after_epoch({"epoch": 2, "f1": 22.5, "exact_match": 20.0})  # the last epoch is kept
    assert FakeTrial.reported == [(1, 12.5), (2, 22.5)]


def test_bad_sweep_input_is_a_peftqa_error(tmp_path):
    with pytest.raises(PeftqaError, match="no rank option"):
        SweepConfig(base=RunConfig.flat(method="ia3"), ranks=[4])
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


def test_trials_are_scored_on_held_out_training_articles_never_dev(tiny_bert_dir, tmp_path):
    squad = write_squad(tmp_path / "squad", train=many_articles())  # dev: the two hand-made articles
    config = _sweep_config(tiny_bert_dir, squad, tmp_path / "sweep", lrs=[1e-2], train_fraction=1.0)
    config.base = config.base.replace(validation_questions=5)
    summary = run_sweep(config, log=lambda _: None)

    assert summary["eval_split"] == "validation"
    trial = Path(summary["best"]["run_dir"])
    settings = files.read_json(trial / runs.RUN_JSON)
    assert settings["config"]["eval_split"] == "validation"
    dev_ids = {e.id for e in load_squad(squad / "dev-v1.1.json")}
    scored = [json.loads(line) for line in (trial / runs.SCORES_JSONL).read_text().splitlines()]
    scored_titles = {row["title"] for row in scored}
    assert scored and not {row["id"] for row in scored} & dev_ids  # never a dev question
    assert len(scored) >= 5 and settings["eval_questions"] == len(scored)
    # Trained on every training question except the held-out articles' (train_fraction 1.0).
    all_questions = sum(len(p["qas"]) for a in many_articles() for p in a["paragraphs"])
    assert settings["train_questions"] == all_questions - len(scored)
    rest, held_out = split_articles(load_squad(squad / "train-v1.1.json"), 5, seed=0)
    assert scored_titles == {e.title for e in held_out} and not scored_titles & {e.title for e in rest}
