"""study.pipeline: a whole study on a tiny random BERT (sweeps -> final runs -> report), and a second run
re-uses it all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.study import pipeline as study_module
from peftqa.study.pipeline import STUDY_PRESETS, StudyConfig, parse_methods, run_study
from tests.helpers import TINY_STUDY


def test_study_runs_sweeps_trains_and_reports(tiny_bert_dir, squad_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(STUDY_PRESETS, "tiny", TINY_STUDY)
    lines: list[str] = []
    summary = run_study(
        StudyConfig("tiny", None, str(tmp_path / "study"), str(squad_dir), str(tiny_bert_dir)), lines.append
    )

    assert [p.split("/")[-1] for p in summary["runs"]] == ["lora", "lora-original"]
    assert summary["learning_rates"]["lora-original"] == 1e-5
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert saved["report"].endswith("report.html") and (tmp_path / "study" / "report" / "report.md").is_file()
    assert any(line.startswith("\n[2/4] sweep lora") for line in lines), lines[:5]
    assert any("peftqa serve" in line for line in lines)
    # The final run is the sweep's best trial (scored on dev once, at its end), not trained again.
    final = json.loads((tmp_path / "study" / "runs" / "lora" / run_folder.RUN_JSON).read_text())
    trial = Path(final["final_run_of"]["trial"])
    assert trial.parent.parent == tmp_path / "study" / "sweeps" / "lora"
    assert (trial / run_folder.SCORES_JSONL).read_text() == (
        tmp_path / "study" / "runs" / "lora" / run_folder.SCORES_JSONL
    ).read_text()
    assert final["config"]["eval_split"] == "dev" and "held-out training questions" in final["validated_on"]
    sweep = json.loads((tmp_path / "study" / "sweeps" / "lora" / "sweep.json").read_text())
    assert sweep["score_dev"] and sweep["best"]["dev_f1"] == summary["results"][0]["f1"]
    report = (tmp_path / "study" / "report" / "report.md").read_text()
    assert "Held-out F1 while training" in report and "| steps | train s |" in report.replace(" [95% CI]", "")

    # Running it again trains nothing: every sweep trial and run is already complete.
    assert any(line.startswith("epoch 1: train loss") for line in lines)  # what training says at an epoch's end
    again_lines: list[str] = []
    again = run_study(
        StudyConfig("tiny", "lora", str(tmp_path / "study"), str(squad_dir), str(tiny_bert_dir)), again_lines.append
    )
    assert again["results"][0]["f1"] == summary["results"][0]["f1"]
    assert not any(line.startswith("epoch ") for line in again_lines)
    assert any(line.endswith("already holds the best trial's run") for line in again_lines)

    # A changed best learning rate must not silently re-use the run trained at the old one.
    monkeypatch.setitem(STUDY_PRESETS, "tiny", dataclasses.replace(TINY_STUDY, sweep_lrs={"lora": [3e-2]}))
    with pytest.raises(PeftqaError, match=r"other settings \(lr: "):
        run_study(StudyConfig("tiny", "lora", str(tmp_path / "study"), str(squad_dir), str(tiny_bert_dir)), lambda _: 0)


def test_a_second_call_with_other_methods_adds_them_to_the_folder_s_study(
    tiny_bert_dir, squad_dir, tmp_path, monkeypatch
):
    two = dataclasses.replace(TINY_STUDY, compare_grids={}, sweep_lrs={"lora": [1e-2], "ia3": [3e-2]})
    monkeypatch.setitem(STUDY_PRESETS, "tiny", two)
    folder = tmp_path / "study"

    def call(methods: str) -> tuple[dict, list[str]]:
        lines: list[str] = []
        config = StudyConfig("tiny", methods, str(folder), str(squad_dir), str(tiny_bert_dir))
        return run_study(config, lines.append), lines

    first, _ = call("lora")
    second, lines = call("ia3")
    assert second["methods"] == ["lora", "ia3"]
    assert [Path(p).name for p in second["runs"]] == ["lora", "ia3"]
    assert [Path(p).name for p in second["sweeps"]] == ["lora", "ia3"]
    assert second["learning_rates"] == {"lora": 1e-2, "ia3": 3e-2}
    assert [r["method"] for r in second["results"]] == ["lora", "ia3"]
    assert second["results"][0] == first["results"][0]
    assert any("also holds 1 run(s) of earlier calls: lora" in line for line in lines)
    report = (folder / "report" / "report.md").read_text()
    assert "| lora |" in report and "| ia3 |" in report

    # A method trained again replaces its entry instead of adding a second one.
    third, _ = call("lora")
    assert [Path(p).name for p in third["runs"]] == ["ia3", "lora"] and len(third["results"]) == 2
    # Another preset into the same folder starts its own record.
    monkeypatch.setitem(STUDY_PRESETS, "other", two)
    other = run_study(StudyConfig("other", "ia3", str(folder), str(squad_dir), str(tiny_bert_dir)), lambda _: None)
    assert [Path(p).name for p in other["runs"]] == ["ia3"]


def test_bad_study_input():
    with pytest.raises(PeftqaError, match="unknown method"):
        parse_methods("lora,nope", ())
    with pytest.raises(PeftqaError, match="unknown study preset"):
        study_module.get_preset("huge")
    assert parse_methods(" lora , ia3 ", ()) == ["lora", "ia3"]
    assert main(["study", "--methods", "nope"]) == 2
    for budgets in ("250,many", "0,1000", ","):
        with pytest.raises(PeftqaError, match="--budgets expects"):
            study_module.parse_budgets(budgets)
    assert study_module.parse_budgets("4000,250,1000,250") == [250, 1000, 4000]


def test_study_pdf_without_chromium_stops_before_any_work(tmp_path, monkeypatch, capsys):
    from peftqa.report import pdf

    monkeypatch.setattr(pdf, "CHROMIUM", tmp_path / "no-chromium")
    assert main(["study", "--pdf", "--output-dir", str(tmp_path / "study"), "--data-dir", str(tmp_path)]) == 2
    assert "--pdf needs Chromium" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_study_folders_are_found_under_the_study_wherever_it_ran(tmp_path):
    from peftqa import files
    from peftqa.study.pipeline import study_folders

    folder = tmp_path / "moved"
    with pytest.raises(PeftqaError, match="no study.json"):
        study_folders(folder)
    for name in ("lora", "ia3"):
        (folder / "runs" / name).mkdir(parents=True)
    summary = {"runs": ["studies/quick/runs/lora", "studies/quick/runs/ia3"], "sweeps": ["studies/quick/sweeps/lora"]}
    files.write_json_atomic(folder / study_module.STUDY_JSON, summary)
    assert study_folders(folder) == ([folder / "runs" / "lora", folder / "runs" / "ia3"], [folder / "sweeps" / "lora"])
    (folder / "runs" / "ia3").rmdir()
    with pytest.raises(PeftqaError, match="not there"):
        study_folders(folder)


def test_study_with_two_workers_runs_final_runs_side_by_side(tiny_bert_dir, squad_dir, tmp_path, monkeypatch, capfd):
    import peftqa.report as report_module

    tiny = dataclasses.replace(TINY_STUDY, compare_grids={}, final_train_limit=4)
    monkeypatch.setitem(STUDY_PRESETS, "tiny", tiny)
    # The report is the test above's business; here only which runs reach it matters.
    reported: list[list[Path]] = []

    def build_report(finals, sweeps, out, log, pdf, budget_runs=()):
        reported.append(list(finals))
        return out / "report.md", out / "report.html"

    monkeypatch.setattr(report_module, "build_report", build_report)
    lines: list[str] = []
    folder = tmp_path / "study"
    summary = run_study(
        StudyConfig("tiny", None, str(folder), str(squad_dir), str(tiny_bert_dir), seeds=2, workers=2), lines.append
    )

    assert [Path(p).name for p in summary["runs"]] == ["lora", "lora-seed43"] == [p.name for p in reported[0]]
    assert [r["seed"] for r in summary["results"]] == [42, 43]  # in the plan's order, whichever finished first
    assert all((Path(p) / run_folder.METRICS_JSON).is_file() for p in summary["runs"])
    # Seed 42 is the sweep's best trial; the further seed trains in a worker process.
    assert any(line.startswith("\n[3/4] further seeds: 1 run(s), 1 at a time") for line in lines), lines
    assert sorted(p.name for p in (folder / "logs").iterdir()) == ["lora-seed43.log"]
    console = capfd.readouterr().out
    assert "[lora-seed43] F1 " in console  # one line per run, the rest in logs/

    # Again: nothing is trained, and no worker process is started for finished runs.
    import peftqa.workers as workers_module

    monkeypatch.setattr(workers_module, "run_jobs", lambda jobs, *a, **k: [] if not jobs else pytest.fail("ran"))
    again = run_study(
        StudyConfig("tiny", None, str(folder), str(squad_dir), str(tiny_bert_dir), seeds=2, workers=2), lambda _: 0
    )
    assert [r["f1"] for r in again["results"]] == [r["f1"] for r in summary["results"]]


def test_study_on_your_own_files_without_titles(tiny_bert_dir, tmp_path, monkeypatch):
    from tests.squad_fixtures import jsonl_rows, many_articles, write_jsonl, write_v2

    monkeypatch.setitem(STUDY_PRESETS, "tiny", TINY_STUDY)
    rows = [{k: v for k, v in row.items() if k != "title"} for row in jsonl_rows(many_articles(12))]
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)  # no titles: held out by context
    dev_file = write_v2(tmp_path / "dev-v2.json")
    config = StudyConfig(
        "tiny", "lora", str(tmp_path / "study"), str(tmp_path / "no-squad-here"), str(tiny_bert_dir),
        train_file=str(train_file), dev_file=str(dev_file), validation_questions=5,
    )  # fmt: skip
    lines: list[str] = []
    summary = run_study(config, lines.append)
    assert any("data: train.jsonl and dev-v2.json" in line for line in lines)
    assert any(line == f"dev: {dev_file}: 10 questions, 4 without an answer" for line in lines)
    final = json.loads((Path(summary["runs"][0]) / run_folder.METRICS_JSON).read_text())
    assert final["NoAns_total"] == 4 and final["null_threshold"] is not None
    trial = next((tmp_path / "study" / "sweeps" / "lora" / "trials").iterdir())
    assert json.loads((trial / run_folder.RUN_JSON).read_text())["config"]["train_file"] == str(train_file)
    report = (tmp_path / "study" / "report" / "report.md").read_text()
    assert "Questions with and without an answer (SQuAD 2.0)" in report


def test_a_file_too_small_for_the_held_out_split_says_so_in_one_line(tiny_bert_dir, tmp_path, monkeypatch):
    from tests.squad_fixtures import jsonl_rows, write_jsonl

    monkeypatch.setitem(STUDY_PRESETS, "tiny", TINY_STUDY)
    small = write_jsonl(tmp_path / "small.jsonl", jsonl_rows())
    config = StudyConfig(
        "tiny", "lora", str(tmp_path / "study"), None, str(tiny_bert_dir), train_file=str(small),
        dev_file=str(small), validation_questions=50,
    )  # fmt: skip
    with pytest.raises(PeftqaError, match=r"cannot hold out 50 questions .* 6 questions in 2 article") as error:
        run_study(config, lambda line: None)
    assert "\n" not in str(error.value)


def test_a_study_across_budgets_on_your_file_plots_f1_and_says_where_the_order_changes(
    tiny_bert_dir, squad_dir, tmp_path, monkeypatch
):
    from tests.squad_fixtures import jsonl_rows, many_articles, write_jsonl

    two = dataclasses.replace(
        TINY_STUDY, methods=("lora", "ia3"), compare_grids={}, sweep_lrs={"lora": [1e-2], "ia3": [3e-2]}
    )
    monkeypatch.setitem(STUDY_PRESETS, "tiny", two)
    train_file = write_jsonl(tmp_path / "train.jsonl", jsonl_rows(many_articles(12)))  # 30 questions, 4 held out
    folder = tmp_path / "study"
    config = StudyConfig(
        "tiny", None, str(folder), str(squad_dir), str(tiny_bert_dir), train_file=str(train_file),
        budgets="8,4,1000",
    )  # fmt: skip
    lines: list[str] = []
    summary = run_study(config, lines.append)

    assert any(line.startswith("note: budget(s) 1,000 dropped: the training data holds 26 ") for line in lines)
    assert [Path(p).name for p in summary["runs"]] == ["lora-q4", "ia3-q4", "lora-q8", "ia3-q8"]
    assert summary["budgets"]["budgets"] == [4, 8] and "a sweep per method" in summary["budgets"]["rate_choice"]
    trained = {Path(p).name: json.loads((Path(p) / run_folder.RUN_JSON).read_text()) for p in summary["runs"]}
    assert {name: s["train_questions"] for name, s in trained.items()} == {
        "lora-q4": 4, "ia3-q4": 4, "lora-q8": 8, "ia3-q8": 8,
    }  # fmt: skip
    assert len({s["eval_ids_sha256"] for s in trained.values()}) == 1  # the same dev questions for all
    report = (folder / "report" / "report.md").read_text()
    assert "## Results across training budgets" in report and "| method | 4 questions | 8 questions |" in report
    assert (folder / "report" / "figures" / "budgets.png").stat().st_size > 0
    assert "Across training budgets (each budget's rates from its own sweeps" in report
    assert "The order, best first: 4: " in report
