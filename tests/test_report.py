"""The report on two tiny trained runs and a hand-made sweep: every section, md and self-contained html."""

from __future__ import annotations

import re

import pytest

from peftqa.cli import main
from peftqa.data import Example
from peftqa.report import answer_length, build_report, load_qualitative, pareto_front, question_type, results_table
from peftqa.sweep import write_sweep
from peftqa.train import train
from tests.conftest import tiny_run_config


@pytest.fixture(scope="module")
def two_runs(tiny_bert_dir, squad_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method, lr in (("lora", 1e-2), ("bitfit", 1e-2)):
        config = tiny_run_config(tiny_bert_dir, squad_dir, root / method, method, batch_size=4, epochs=1, lr=lr)
        train(config, log=lambda line: None)
    return [root / "lora", root / "bitfit"]


def _fake_sweep(folder):
    trials = [
        {"number": i, "state": "COMPLETE", "params": {"lr": lr}, "f1": f1, "exact_match": f1 / 2}
        for i, (lr, f1) in enumerate([(1e-4, 10.0), (3e-4, 30.0), (1e-3, 20.0)])
    ]
    write_sweep(
        folder,
        {
            "method": "lora",
            "train_questions": 300,
            "epochs": 1,
            "trials": trials,
            "best": trials[1],
            "edge_warnings": [],
        },
    )
    return folder


def test_report_has_every_section(two_runs, tmp_path):
    out = tmp_path / "report"
    markdown_path, html_path = build_report(two_runs, [_fake_sweep(tmp_path / "sweep")], out, log=lambda line: None)
    markdown = markdown_path.read_text()
    for heading in (
        "## Results",
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


def test_disagreement_examples_show_a_question_asked_twice_once():
    from peftqa.report import _distinct_questions

    by_id = {
        "a": Example("a", "Where?", "ctx", ("x",), (0,)),
        "b": Example("b", "Where?", "ctx", ("x",), (0,)),
        "c": Example("c", "Who?", "ctx", ("x",), (0,)),
    }
    assert _distinct_questions(["a", "b", "c"], by_id) == ["a", "c"]
