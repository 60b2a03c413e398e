"""A whole study on a tiny random BERT: sweeps -> final runs -> report, and a second run re-uses it all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from peftqa import runs
from peftqa import study as study_module
from peftqa.checkpoint import check_same_settings
from peftqa.cli import main
from peftqa.errors import PeftqaError
from peftqa.study import STUDY_PRESETS, StudyPreset, parse_methods, run_study

TINY = StudyPreset(
    description="tiny test study",
    methods=("lora",),
    run={"max_length": 128, "doc_stride": 32, "batch_size": 4, "eval_batch_size": 8, "validation_questions": 3},
    sweep_train_limit=4,
    sweep_train_fraction=0.1,
    sweep_epochs=1.0,
    sweep_eval_limit=None,
    final_train_limit=None,
    final_epochs=1.0,
    final_eval_limit=None,
    sweep_lrs={"lora": [1e-2]},
    compare_grids={"original": {"lora": [1e-5]}},
)


def test_study_runs_sweeps_trains_and_reports(tiny_bert_dir, squad_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(STUDY_PRESETS, "tiny", TINY)
    lines: list[str] = []
    summary = run_study("tiny", None, tmp_path / "study", str(squad_dir), {"model": str(tiny_bert_dir)}, lines.append)

    assert [p.split("/")[-1] for p in summary["runs"]] == ["lora", "lora-original"]
    assert summary["learning_rates"]["lora-original"] == 1e-5
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert saved["report"].endswith("report.html") and (tmp_path / "study" / "report" / "report.md").is_file()
    assert any(line.startswith("\n[2/6] sweep lora") for line in lines), lines[:5]
    assert any("peftqa serve" in line for line in lines)

    # Running it again trains nothing: every sweep trial and run is already complete.
    import peftqa.train as train_module

    monkeypatch.setattr(train_module, "_fit", lambda *a, **k: pytest.fail("trained again"))
    again = run_study("tiny", "lora", tmp_path / "study", str(squad_dir), {"model": str(tiny_bert_dir)}, lambda _: 0)
    assert again["results"][0]["f1"] == summary["results"][0]["f1"]

    # A changed best learning rate must not silently re-use the run trained at the old one.
    final = runs.load_run(summary["runs"][0]).config
    check_same_settings(Path(final.output_dir), final)
    with pytest.raises(PeftqaError, match="other settings"):
        check_same_settings(Path(final.output_dir), dataclasses.replace(final, lr=final.lr * 3))


def test_bad_study_input():
    with pytest.raises(PeftqaError, match="unknown method"):
        parse_methods("lora,nope", ())
    with pytest.raises(PeftqaError, match="unknown study preset"):
        study_module.get_preset("huge")
    assert parse_methods(" lora , ia3 ", ()) == ["lora", "ia3"]
    assert main(["study", "--methods", "nope"]) == 2
