"""tools/study_table: a study's method table from a tiny study's folders (every run against the head-only
floor), its compute-seconds line summing what the sweep trials and final runs recorded."""

from __future__ import annotations

import dataclasses
import re

from peftqa import files
from peftqa.inference import run_folder
from peftqa.study.pipeline import STUDY_PRESETS, StudyConfig, run_study
from tests.helpers import TINY_STUDY
from tools.study_table import table


def test_table_has_a_row_per_final_run_and_sums_the_study_seconds(tiny_bert_dir, squad_dir, tmp_path, monkeypatch):
    # The floor at one rate too (the head's default grid would add four trials to this test).
    preset = dataclasses.replace(TINY_STUDY, sweep_lrs={**TINY_STUDY.sweep_lrs, "head": [1e-2]})
    monkeypatch.setitem(STUDY_PRESETS, "tiny", preset)
    study = tmp_path / "study"
    run_study(StudyConfig("tiny", "head,lora", str(study), str(squad_dir), str(tiny_bert_dir)), lambda _: None)

    text = table(study)
    names = sorted(p.name for p in (study / "runs").iterdir())  # head, lora and lora at the compared grid
    for name in names:
        rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
        assert len(rows) == 1, text
    assert "| **0.01** |" in text, text
    head_row = next(line for line in text.splitlines() if line.startswith("| head |"))
    assert "| the floor |" in head_row, head_row
    lora_row = next(line for line in text.splitlines() if line.startswith("| lora |"))
    assert re.search(r"\| (yes|not shown), [+-]\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] \|", lora_row), lora_row

    # A trial pruned at a rung: its rate marked, its training seconds counted in the sweep's.
    sweep_json = study / "sweeps" / "lora" / "sweep.json"
    summary = files.read_json(sweep_json)
    summary["trials"].append({"params": {"lr": 0.1}, "state": "PRUNED", "train_seconds": 1000.0})
    files.write_json_atomic(sweep_json, summary)
    pruned = table(study)
    assert "| lora | **0.01**, 0.1† |" in pruned and "† a rate whose trial was pruned" in pruned, pruned

    def seconds(paths: list) -> float:
        return sum(m["train_seconds"] + m["eval_seconds"] for m in map(files.read_json, paths))

    sweeps = seconds(sorted(study.glob(f"sweeps/*/trials/*/{run_folder.METRICS_JSON}")))
    # The final runs are the sweeps' best trials (copied), counted once: in the sweeps.
    assert all("final_run_of" in files.read_json(p) for p in study.glob(f"runs/*/{run_folder.RUN_JSON}"))
    finals = 0.0
    footer = text.splitlines()[-1]
    assert footer.startswith(f"{len(names)} methods;"), footer
    assert f"sweeps {sweeps:,.0f} s, final runs {finals:,.0f} s" in footer, footer
    pruned_footer = pruned.splitlines()[-1]
    assert f"sweeps {sweeps + 1000:,.0f} s" in pruned_footer, pruned_footer
