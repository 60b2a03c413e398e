"""The report on two tiny trained runs and a hand-made sweep: every section, md and self-contained html."""

from __future__ import annotations

import json
import re

import pytest

from peftqa import files
from peftqa.cli.commands import main
from peftqa.data import Example, QuestionChoice, load_squad
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.report import (
    NOT_SETTLED,
    answer_length,
    build_report,
    comparison_rows,
    disagreements,
    findings,
    load_qualitative,
    load_results,
    pareto_front,
    question_type,
    results_rows,
    results_table,
)
from peftqa.scoring.metrics import question_scores_v2
from peftqa.sweep import read_sweep, write_sweep
from peftqa.training.loop import train
from tests.helpers import DEVICE, fake_run, fake_sweep, tiny_run_config
from tests.squad_fixtures import write_v2


@pytest.fixture(scope="module")
def two_runs(tiny_bert_dir, squad_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method, lr in (("lora", 1e-2), ("bitfit", 1e-2)):
        config = tiny_run_config(tiny_bert_dir, squad_dir, root / method, method, batch_size=4, epochs=1, lr=lr)
        train(config, log=lambda line: None)
    return [root / "lora", root / "bitfit"]


def test_report_has_every_section(two_runs, tmp_path):
    out = tmp_path / "report"
    markdown_path, html_path = build_report(two_runs, [fake_sweep(tmp_path / "sweep")], out, log=lambda line: None)
    markdown = markdown_path.read_text()
    for heading in (
        "## Findings",
        "## Results",
        "## Paired comparisons",
        "## Learning-rate sweeps",
        "## Training curves",
        "## F1 against trainable",
        "### F1 by question type",
        "### F1 by answer length",
        "### Agreement between runs",
        "## Qualitative",
        "### date",
        "### why",
    ):
        assert heading in markdown, heading
    figures = re.findall(r"!\[[^]]*\]\((figures/[^)]+)\)", markdown)
    assert len(figures) >= 4 and all((out / f).is_file() for f in figures)

    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    assert not re.search(r"src=['\"](?!data:)", page), "the html must not load any other file"
    assert "<table>" in page and "Pareto front" in page


def test_report_cli(two_runs, tmp_path, capsys):
    assert main(["report", *map(str, two_runs), "--out", str(tmp_path / "r"), "--no-qualitative"]) == 0
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2


def test_results_table_reads_peak_memory_when_present():
    row = {
        "method": "lora",
        "model": "m",
        "exact_match": 1.0,
        "f1": 2.0,
        "trainable_params": 10,
        "trainable_percent": 0.1,
        "artifact_bytes": 2048,
        "train_seconds": 3.0,
        "train_features_per_second": 4.0,
    }
    assert results_table([row]).splitlines()[-1].endswith("| n/a |")
    assert "1.0 GB" in results_table([{**row, "peak_memory_mb": 1024}])


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who wrote it?", "who"),
        ("In what year did it open?", "what"),
        ("How many people live there?", "how many"),
        ("Which river flows there?", "what"),
        ("Name the river.", "other"),
        ("Why was it closed?", "why"),
        ("When did the war end, and who won?", "when"),
    ],
)
def test_question_type(question, kind):
    assert question_type(question) == kind


def test_answer_length_and_pareto_front():
    assert answer_length(Example("x", "q", "c", ("Jane Austen",), (0,))) == "2-3 words"
    points = [("full", 66_000_000, 80.0), ("lora", 1_000_000, 79.0), ("ia3", 60_000, 70.0), ("vera", 70_000, 60.0)]
    assert pareto_front(points) == ["ia3", "lora", "full"]


def test_qualitative_examples_are_well_formed():
    examples = load_qualitative()
    assert {"simple fact", "date", "several constraints", "answer in several pieces", "why"} <= {
        e["category"] for e in examples
    }
    for e in examples:
        assert e["question"].strip() and all(answer in e["context"] for answer in e["answers"]), e["question"]


# ---------------------------------------------------------------- intervals, paired comparisons, seeds, findings
# Run directories written by hand (no training): every per-question score is chosen, so every verdict is known.


def _report(run_dirs, tmp_path, sweeps=()):
    markdown_path, _ = build_report(run_dirs, sweeps, tmp_path / "report", qualitative=False, log=lambda line: None)
    return markdown_path.read_text()


def _row(markdown, first_cell, section="## Results"):
    """The first table row of `section` whose first cell is `first_cell`."""
    lines = markdown[markdown.index(section) :].splitlines()
    return next(line for line in lines if line.startswith(f"| {first_cell} |"))


def test_the_public_tables_are_the_report_s_own(many_dir, tmp_path):
    right = [k % 3 != 0 for k in range(30)]
    folders = [
        fake_run(tmp_path / "lora", many_dir, "lora", right),
        fake_run(tmp_path / "full", many_dir, "full", [True] * 30),
    ]
    results = load_results(folders)
    markdown = _report(folders, tmp_path)
    headers, rows = results_rows(results)
    assert headers[:2] == ["run", "method"] and [row[0] for row in rows] == ["lora", "full"]
    assert rows[0][headers.index("F1 [95% CI]")] == results[0].formatted("f1")
    assert "| " + " | ".join(map(str, rows[0])) + " |" in markdown
    headers, rows = comparison_rows(results)
    assert headers[2] == "F1 - full" and [row[0] for row in rows] == ["lora"] and rows[0][1] == 30
    assert comparison_rows(results[:1]) == ([], [])
    wrong = disagreements(results[1], results[0])
    assert len(wrong) == 3 and all(row[2].startswith("full: ") and row[3] == "lora: founded" for row in wrong)
    assert disagreements(results[1], results[0], limit=1) == wrong[:1]
    assert disagreements(results[0], results[1]) == []  # lora is never right where full is wrong
    section = markdown[markdown.index("### Where one run is right") :]
    assert all(f"| {row[0]} |" in section for row in wrong)


def test_scores_come_from_scores_jsonl_and_a_run_without_it_is_an_error(many_dir, tmp_path):
    right = [k % 3 == 0 for k in range(30)]
    (result,) = load_results([fake_run(tmp_path / "a", many_dir, "lora", right)])
    assert len(result.scores) == 30 and [e.id for e in result.examples] == list(result.scores)
    assert result.mean("f1") == pytest.approx(100 * 10 / 30)
    without = fake_run(tmp_path / "b", many_dir, "lora", right, scores_file=False)
    with pytest.raises(PeftqaError, match=r"b/scores\.jsonl: no such file"):
        load_results([without])


def test_results_table_carries_intervals_that_contain_the_point(many_dir, tmp_path):
    lora = fake_run(tmp_path / "lora", many_dir, "lora", [k % 2 == 0 for k in range(30)])
    full = fake_run(tmp_path / "full", many_dir, "full", [k % 5 != 0 for k in range(30)])
    markdown = _report([lora, full], tmp_path)
    assert "| EM [95% CI] | F1 [95% CI] |" in markdown
    for name, f1 in (("lora", 50.0), ("full", 80.0)):
        intervals = re.findall(r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\]", _row(markdown, name))
        assert len(intervals) == 2, _row(markdown, name)
        value, low, high = map(float, intervals[1])
        assert value == f1 and low < value < high
    assert "Every run is scored on 30 dev questions (all)." in markdown  # run.json's own words


def test_paired_comparison_settles_only_a_clear_difference(many_dir, tmp_path):
    assert NOT_SETTLED == "not settled (interval includes 0)"
    right = [k % 2 == 0 for k in range(30)]
    full = fake_run(tmp_path / "full", many_dir, "full", right)
    twin = fake_run(tmp_path / "twin", many_dir, "lora", right)  # the same answers as full
    worse = fake_run(tmp_path / "worse", many_dir, "ia3", [False] * 30)
    markdown = _report([full, twin, worse], tmp_path)
    assert "## Paired comparisons" in markdown
    twin_row, worse_row = (_row(markdown, name, "## Paired comparisons") for name in ("twin", "worse"))
    assert f"| 30 | +0.0 [0.0, 0.0] | {NOT_SETTLED} |" in twin_row
    assert "| 30 | -50.0 [" in worse_row and "| settled |" in worse_row and "not settled" not in worse_row


def test_seeds_table_appears_with_two_seeds_of_one_method(many_dir, tmp_path):
    full = fake_run(tmp_path / "full", many_dir, "full", [True] * 30)
    one = fake_run(tmp_path / "s1", many_dir, "lora", [k % 2 == 0 for k in range(30)], seed=1)
    assert "## Seeds" not in _report([full, one], tmp_path)
    two = fake_run(tmp_path / "s2", many_dir, "lora", [k % 3 == 0 for k in range(30)], seed=2)
    other_lr = fake_run(tmp_path / "s3", many_dir, "lora", [k % 3 == 0 for k in range(30)], seed=3, lr=1e-2)
    markdown = _report([full, one, two, other_lr], tmp_path)
    assert "## Seeds" in markdown
    # Seeds 1 and 2: F1 50.0 and 33.3; the run at another learning rate is a setting of its own.
    row = _row(markdown, "lora (learning_rate=0.001)", "## Seeds")
    assert "| 1, 2 |" in row and "41.7 ± 11.8" in row and "s1: 50.0 [" in row and "s3" not in row
    assert "| 3 | 33.3 (one seed) |" in _row(markdown, "lora (learning_rate=0.01)", "## Seeds")


def test_findings_section_is_generated_changing_a_runs_metrics_changes_the_sentence(many_dir, tmp_path):
    full = fake_run(tmp_path / "full", many_dir, "full", [k % 5 != 0 for k in range(30)], trainable=10**6)
    lora = fake_run(tmp_path / "lora", many_dir, "lora", [k % 2 == 0 for k in range(30)], trainable=1000)
    before = findings(load_results([full, lora]))
    assert before[0].startswith("**full** has the highest F1, 80.0 [")
    assert (
        "Its lead over lora (F1 50.0 [" in before[0]
        and "is +30.0 [" in before[0]
        and "the lead is settled" in before[0]
    )
    assert (
        "Gap to full fine-tuning" in before[1]
        and "lora -30.0 [" in before[1]
        and "(settled, 30 questions)" in before[1]
    )
    assert before[2].startswith("No run trained the QA head alone")
    assert "lora trains 1,000 parameters" in before[3] and "62% of full fine-tuning's F1" in before[3]
    assert "Each method was trained once (seed 42)" in before[-1] and "on a CPU" in before[-1]

    fake_run(tmp_path / "lora", many_dir, "lora", [k % 5 != 0 or k == 0 for k in range(30)], trainable=1000)
    after = findings(load_results([full, lora]))
    assert after[0].startswith("**lora** has the highest F1, 83.3 [")
    assert "Its lead over full (F1 80.0 [" in after[0] and "the lead is not settled" in after[0]
    assert "lora +3.3 [" in after[1] and "(not settled, 30 questions)" in after[1]

    markdown = _report([full, lora], tmp_path)
    assert markdown.index("## Findings") < markdown.index("## Results")
    assert after[0] in markdown


def test_sweep_plot_names_the_questions_its_trials_were_scored_on_and_draws_their_intervals():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from peftqa.plots import draw_sweep

    trials = [
        {"state": "COMPLETE", "params": {"lr": lr}, "f1": f1, "f1_ci": [f1 - 2, f1 + 3]}
        for lr, f1 in ((3e-3, 10.0), (1e-3, 8.0))
    ]
    summary = {"method": "lora", "trials": trials, "best": {"params": {"lr": 3e-3}, "f1": 10.0}, "epochs": 1}
    summary["train_questions"] = 300
    older = {**summary, "trials": [{k: v for k, v in t.items() if k != "f1_ci"} for t in trials]}
    drawn = {}
    for name, shown in (("held-out", {**summary, "eval_split": "validation"}), ("older", older)):
        figure, axis = plt.subplots()
        draw_sweep(axis, shown)
        bars = [c for c in axis.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
        segments = [s.tolist() for s in bars[0].lines[2][0].get_segments()] if bars else []
        drawn[name] = (axis.get_ylabel(), segments)
        plt.close(figure)
    # Held-out training questions since sweeps stopped choosing on dev; older summaries were scored on dev
    # and kept no intervals. Bars run from each interval's low to its high end, in learning-rate order.
    assert drawn["held-out"] == ("held-out train F1", [[[1e-3, 6.0], [1e-3, 11.0]], [[3e-3, 8.0], [3e-3, 13.0]]])
    assert drawn["older"] == ("dev F1", [])


def test_sweep_tables_give_each_trial_s_interval_and_name_the_held_out_loss(two_runs, tmp_path):
    folder = fake_sweep(tmp_path / "sweep")
    summary = read_sweep(folder)
    for trial in summary["trials"]:
        trial["f1_ci"] = [trial["f1"] - 3, trial["f1"] + 3]
    write_sweep(folder, {**summary, "eval_split": "validation"})
    markdown = _report(two_runs, tmp_path, sweeps=[folder])
    assert "| 1 | lr=0.0003 | COMPLETE |  | 30.00 [27.00, 33.00] | 15.00 |" in markdown  # steps: not recorded
    assert "| trial | params | state | steps | F1 | EM | held-out loss |" in markdown


def _fake_v2_run(folder, dev_file, method, answers_unanswerable: bool):
    """A finished run on a SQuAD 2.0 dev file: right on every answerable question; on the questions
    without an answer it answers "Paris" (answers_unanswerable) or nothing."""
    examples = load_squad(dev_file)
    predictions = {e.id: e.answers[0] if e.answers else ("Paris" if answers_unanswerable else "") for e in examples}
    scores = question_scores_v2(predictions, {e.id: list(e.answers) for e in examples})
    rows = [{"id": e.id, "title": e.title, **scores[e.id], "prediction": predictions[e.id]} for e in examples]
    for needed in ("adapter", "tokenizer"):
        (folder / needed).mkdir(parents=True, exist_ok=True)
    config = {"method": method, "model": "m", "data_dir": None, "dev_file": str(dev_file), "seed": 42, "lr": 1e-3}
    config |= {"epochs": 1.0, "max_length": 128, "batch_size": 4, "output_dir": str(folder), "eval_split": "dev"}
    settings = {"config": config, "base_model_path": "m", "learning_rate": 1e-3, "train_questions": 300}
    settings |= {"device": DEVICE, "eval_description": QuestionChoice(dev_file=str(dev_file)).describe(len(examples))}
    settings["null_threshold_chosen_on"] = "7 held-out training questions (whole articles) (all)"
    files.write_json_atomic(folder / run_folder.RUN_JSON, settings)
    files.write_json_atomic(folder / run_folder.PREDICTIONS_JSON, predictions)
    (folder / run_folder.SCORES_JSONL).write_text("".join(json.dumps(row) + "\n" for row in rows))
    f1 = sum(s["f1"] for s in scores.values()) / len(scores)
    metrics = {"method": method, "model": "m", "exact_match": f1, "f1": f1, "trainable_params": 1000}
    metrics |= {"trainable_percent": 1.0, "artifact_bytes": 4096, "train_seconds": 1.0, "null_threshold": 0.5}
    files.write_json_atomic(
        folder / run_folder.METRICS_JSON, {**metrics, "train_features_per_second": 1.0, "history": []}
    )
    return folder


def test_squad2_runs_get_the_answerable_and_unanswerable_figures_and_their_errors(tmp_path):
    dev = write_v2(tmp_path / "dev-v2.json")
    abstains = _fake_v2_run(tmp_path / "lora", dev, "lora", answers_unanswerable=False)
    answers = _fake_v2_run(tmp_path / "ia3", dev, "ia3", answers_unanswerable=True)
    markdown = _report([abstains, answers], tmp_path)
    section = "## Questions with and without an answer (SQuAD 2.0)"
    assert section in markdown
    assert _row(markdown, "lora", section).startswith(
        "| lora | 6 / 4 | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] | 0 of 4"
    )
    assert (
        "| ia3 | 6 / 4 | 100.0 [100.0, 100.0] | 0.0 [0.0, 0.0] | 4 of 4 | 0 of 6 | 0.500 (chosen on 7 held-out"
        in markdown
    )
    assert "NoAns accuracy difference" in markdown and "-100.0 [-100.0, -100.0]" in markdown
    assert "| ia3 | How many copies sold? | Paris |" in markdown
    assert "| Who owns the café today? | (no answer) | lora: (no answer) | ia3: Paris |" in markdown
    assert "lora answers nothing on 100% of the 4 questions that have no answer" in markdown
    assert "dev questions of dev-v2.json" in markdown
    assert "| no answer | 4 |" in markdown  # the answer-length table's group for questions without one
    # A changed dev file is not taken for the data the runs were scored on... when run.json has its fingerprint.
    settings = files.read_json(abstains / "run.json")
    settings["data_files"] = {"dev": {"fingerprint": "sha256:0"}}
    files.write_json_atomic(abstains / "run.json", settings)
    with pytest.raises(Exception, match="is not the data this run was scored on"):
        _report([abstains], tmp_path)


def test_the_report_never_writes_over_the_users_own_files_unasked(many_dir, tmp_path, capsys):
    run = fake_run(tmp_path / "lora", many_dir, "lora", [True] * 30)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# My thesis report\n")
    argv = ["report", str(run), "--no-qualitative", "--out"]
    assert main([*argv, str(mine)]) == 2
    err = capsys.readouterr().err
    assert "not a peftqa report" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"] and (mine / "report.md").read_text().startswith(
        "# My"
    )
    # An earlier peftqa report is replaced as before; --force writes among the user's files.
    assert main([*argv, str(tmp_path / "report")]) == 0 and main([*argv, str(tmp_path / "report")]) == 0
    assert main([*argv, str(mine), "--force"]) == 0
    assert (mine / "report.md").read_text().startswith("# peftqa report")
    (tmp_path / "a-file").write_text("x")
    assert main([*argv, str(tmp_path / "a-file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_diverged_runs_null_losses_show_as_missing(many_dir, tmp_path):
    run = fake_run(tmp_path / "lora", many_dir, "lora", [True] * 30)
    metrics = files.read_json(run / run_folder.METRICS_JSON)
    metrics["history"] = [{"epoch": 1, "step": 2, "train_loss": None, "eval_loss": None, "exact_match": 0.0, "f1": 0.0}]
    files.write_json_atomic(run / run_folder.METRICS_JSON, metrics)
    markdown = _report([run], tmp_path)
    assert "| 1 | 2 | – | – | 0.00 |" in markdown
