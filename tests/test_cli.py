"""The command line: every bad input gives one line and exit status 2, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peftqa.cli.commands import main
from tests.official_squad2 import official_v2
from tests.squad_fixtures import squad_document

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftqa: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--method", "nope"], ["unknown method 'nope'", "lora", "ia3", "full"]),
        (["--lr", "0"], ["--lr: must be a finite number > 0, got 0.0"]),
        (["--lr=-1e-3"], ["--lr: must be a finite number > 0"]),
        (["--epochs", "0"], ["--epochs: must be a finite number > 0"]),
        (["--eval-batch-size", "0"], ["--eval-batch-size: must be a whole number >= 1, got 0"]),
        (["--preset", "quick", "--lora-r", "0"], ["--lora-r: must be a whole number >= 1"]),
        (["--method", "ia3", "--lora-r", "4"], ["--lora-r does not apply to method 'ia3'"]),
    ],
)
def test_bad_settings_are_rejected_before_any_work(capsys, argv, fragments):
    _assert_one_line_error(*_run(capsys, "train", *argv)[::2], *fragments)


def test_missing_data_says_how_to_fetch(capsys, tmp_path, tiny_bert_dir):
    code, _, err = _run(capsys, "train", "--model", str(tiny_bert_dir), "--data-dir", str(tmp_path / "none"))
    _assert_one_line_error(code, err, "peftqa data fetch")


def test_data_file_that_is_not_json_is_named(capsys, tmp_path, tiny_bert_dir):
    (tmp_path / "train-v1.1.json").write_text("<html>not json</html>")
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad_document()))
    code, _, err = _run(capsys, "train", "--model", str(tiny_bert_dir), "--data-dir", str(tmp_path))
    _assert_one_line_error(code, err, "train-v1.1.json: not valid JSON")


def test_model_that_cannot_be_loaded_names_the_way_out(capsys, tmp_path, squad_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(
        capsys, "train", "--model", "no-such-org/no-such-model", "--data-dir", str(squad_dir), "--output-dir",
        str(tmp_path / "run"),
    )  # fmt: skip
    _assert_one_line_error(code, err, "cannot load model 'no-such-org/no-such-model'", "--model minilm-l6")


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--question", "q?", "--context", "c"]])
def test_run_directory_with_missing_files_is_reported(capsys, tmp_path, command):
    run_dir = tmp_path / "run"
    code, _, err = _run(capsys, command[0], str(run_dir), *command[1:])
    _assert_one_line_error(code, err, "no such run directory")
    run_dir.mkdir()
    code, _, err = _run(capsys, command[0], str(run_dir), *command[1:])
    _assert_one_line_error(code, err, "run.json is missing")
    (run_dir / "run.json").write_text(json.dumps({"config": {"method": "lora"}, "base_model_path": "x"}))
    code, _, err = _run(capsys, command[0], str(run_dir), *command[1:])
    _assert_one_line_error(code, err, "'adapter/' is missing")


def test_score_has_the_official_interface(capsys, squad_dir, tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"q-author": "Jane Austen", "q-year": "in 1813", "q-city": "Paris, France"}))
    code, out, _ = _run(capsys, "score", str(squad_dir / "dev-v1.1.json"), str(predictions))
    assert code == 0
    scores = json.loads(out)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 6)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 6)
    predictions.write_text(json.dumps(["not", "a", "mapping"]))
    _assert_one_line_error(*_run(capsys, "score", str(squad_dir / "dev-v1.1.json"), str(predictions))[::2], "{")


def test_train_evaluate_predict_round_trip(capsys, tmp_path, squad_dir, tiny_distilbert_dir):
    run_dir = tmp_path / "run"
    common = ["--data-dir", str(squad_dir), "--max-length", "128", "--doc-stride", "32", "--batch-size", "4"]
    code, _, _ = _run(
        capsys, "train", "--method", "ia3", "--model", str(tiny_distilbert_dir), "--max-steps", "2",
        "--output-dir", str(run_dir), *common,
    )  # fmt: skip
    assert code == 0
    code, out, _ = _run(capsys, "evaluate", str(run_dir))
    assert code == 0
    assert json.loads(out)["f1"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["f1"])
    context = "Pride and Prejudice was written by Jane Austen."
    code, out, _ = _run(capsys, "predict", str(run_dir), "--question", "Who wrote it?", "--context", context)
    answer = json.loads(out)
    assert code == 0 and set(answer) == {"answer", "start", "end", "score"}
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    _assert_one_line_error(*_run(capsys, "predict", str(run_dir), "--question", " ", "--context", "x")[::2], "empty")


def test_errors_print_no_traceback_in_a_real_process():
    completed = subprocess.run(
        [sys.executable, "-m", "peftqa", "train", "--method", "nope"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr and "unknown method" in completed.stderr


def test_original_train_py_still_works(tmp_path, squad_dir, tiny_bert_dir):
    from train import translate

    assert translate(["--model_type", "ia3", "--epochs", "3"]) == [
        "train", "--method", "ia3", "--epochs", "3", "--output-dir", "backend/ia3",
    ]  # fmt: skip
    completed = subprocess.run(
        [
            sys.executable, str(REPO / "train.py"), "--model_type", "lora", "--epochs", "1", "--model",
            str(tiny_bert_dir), "--data-dir", str(squad_dir), "--max-length", "128", "--doc-stride", "32",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (tmp_path / "backend" / "lora" / "metrics.json").is_file()
    assert (tmp_path / "backend" / "lora" / "adapter" / "adapter_model.safetensors").is_file()


def test_score_with_ci_adds_intervals_and_leaves_the_official_output_alone(capsys, squad_dir, tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"q-author": "Jane Austen", "q-year": "in 1813", "q-city": "Paris, France"}))
    dev = str(squad_dir / "dev-v1.1.json")
    code, out, _ = _run(capsys, "score", dev, str(predictions))
    # Byte for byte what evaluate-v1.1.py prints: 0..1 scores summed in file order, then x100 / count.
    official = {"exact_match": 100.0 * (1.0 + 1.0) / 6, "f1": 100.0 * (1.0 + 1.0 + 0.0 + 2 / 3) / 6}
    assert code == 0 and out == json.dumps(official) + "\n"
    code, out, _ = _run(capsys, "score", dev, str(predictions), "--ci")
    scores = json.loads(out)
    assert code == 0 and set(scores) == {"exact_match", "f1", "exact_match_ci", "f1_ci", "questions"}
    assert {key: scores[key] for key in official} == official and scores["questions"] == 6
    for key in official:
        low, high = scores[f"{key}_ci"]
        assert 0 <= low < scores[key] < high <= 100
    assert json.loads(_run(capsys, "score", dev, str(predictions), "--ci")[1]) == scores  # seeded


def test_sweep_flags_are_made_from_sweep_config_and_its_defaults_apply(monkeypatch, squad_dir):
    import peftqa.sweep as sweep_module
    from peftqa.cli.commands import build_parser
    from peftqa.sweep import SweepConfig

    seen: list[SweepConfig] = []
    monkeypatch.setattr(sweep_module, "run_sweep", seen.append)
    assert main(["sweep", "--method", "lora", "--data-dir", str(squad_dir), "--lrs", "3e-3,1e-3"]) == 0
    (config,) = seen
    defaults = SweepConfig(base=config.base)
    assert config.lrs == [3e-3, 1e-3] and config.learning_rates == [1e-3, 3e-3]
    for name in ("train_fraction", "epochs", "eval_limit", "sampler", "prune", "extend_edges", "workers"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.base.optimisation.epochs == config.epochs

    seen.clear()
    flags = ["--no-prune", "--sampler", "tpe", "--n-trials", "3", "--epochs", "2", "--eval-limit", "50"]
    assert main(["sweep", "--method", "lora", "--data-dir", str(squad_dir), "--ranks", "4,8", *flags]) == 0
    (config,) = seen
    assert (config.prune, config.sampler, config.n_trials, config.ranks) == (False, "tpe", 3, [4, 8])
    assert (config.epochs, config.base.optimisation.epochs, config.eval_limit) == (2.0, 2.0, 50)

    # Every SweepConfig field with help has its flag (the run flags cover the trial size and folder).
    parsed = build_parser().parse_args(["sweep", "--method", "lora"])
    assert all(hasattr(parsed, f.name) for f in dataclasses.fields(SweepConfig) if "help" in f.metadata)


def test_score_detects_squad2_files_and_prints_the_official_dict(capsys, tmp_path):
    from tests.squad_fixtures import write_v2

    dev = write_v2(tmp_path / "dev-v2.json")
    predictions = tmp_path / "predictions.json"
    answers = {"q-author": "Jane Austen", "q-year": "1813", "q-austen-none": "", "q-cafe-none": "Paris"}
    predictions.write_text(json.dumps(answers))
    code, out, _ = _run(capsys, "score", str(dev), str(predictions))
    scores = json.loads(out)
    assert code == 0 and list(scores)[:3] == ["exact", "f1", "total"] and scores["total"] == 10
    # Missing answers are "no answer": q-austen-none2 and q-cafe-none2 are right, the 4 unanswered answerable wrong.
    assert scores["NoAns_exact"] == pytest.approx(75.0) and scores["HasAns_exact"] == pytest.approx(100 * 2 / 6)

    document = json.loads(dev.read_text())["data"]
    every = {qa["id"]: answers.get(qa["id"], "") for a in document for p in a["paragraphs"] for qa in p["qas"]}
    assert scores == official_v2(document, every)  # the official script, given "" for the missing answers
    na_probs = tmp_path / "na.json"
    na_probs.write_text(json.dumps({key: 0.5 for key in answers}))
    code, out, _ = _run(capsys, "score", str(dev), str(predictions), "--na-probs", str(na_probs), "--ci")
    scores = json.loads(out)
    assert code == 0 and {"best_f1", "best_f1_thresh", "exact_match_ci", "f1_ci"} <= set(scores)
    code, out, _ = _run(capsys, "score", str(dev), str(predictions), "--version", "1")
    assert code == 0 and set(json.loads(out)) == {"exact_match", "f1"}
    _assert_one_line_error(*_run(capsys, "score", str(dev), str(predictions), "--version", "3")[::2], "1 or 2")


def test_data_make_v2_and_bad_files_of_each_format_are_one_line(capsys, tmp_path, squad_dir, tiny_bert_dir):
    from tests.squad_fixtures import jsonl_rows, write_jsonl

    out = tmp_path / "v2.json.gz"
    code, printed, _ = _run(capsys, "data", "make-v2", str(squad_dir / "train-v1.1.json"), str(out), "--seed", "3")
    assert code == 0 and out.is_file() and "6 questions, 2 of them moved" in printed
    rows = jsonl_rows()
    rows[4]["answers"]["answer_start"] = [0]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    common = ["train", "--model", str(tiny_bert_dir), "--output-dir", str(tmp_path / "run")]
    code, _, err = _run(capsys, *common, "--train-file", str(bad), "--dev-file", str(squad_dir / "dev-v1.1.json"))
    _assert_one_line_error(code, err, "bad.jsonl:5: question q-opened: answer_start 0 does not point at its text")
    code, _, err = _run(capsys, *common, "--train-file", str(tmp_path / "nowhere.jsonl"), "--dev-file", str(bad))
    _assert_one_line_error(code, err, "nowhere.jsonl")
    assert not (tmp_path / "run").exists()


def test_help_says_what_the_tool_does_and_its_first_commands_parse(capsys):
    import shlex

    from peftqa.cli.commands import build_parser

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    described = " ".join(text.split("\n\n")[1].split())  # the paragraph after the usage line
    for words in ("extractive question answering", "parameter-efficient fine-tuning", "compare", "serve", "export"):
        assert words in described, words
    starters = [line.strip() for line in text.splitlines() if line.strip().startswith("peftqa ")]
    assert [line.split()[1] for line in starters] == ["study", "train", "serve"], starters
    for line in starters:  # each example is a command the parser accepts, as written
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert args.handler.__name__ == f"_cmd_{args.command}"
    assert max(len(line) for line in text.split("where most people start")[1].splitlines()) <= 100


def test_version_is_the_project_version(capsys, monkeypatch):
    import tomllib

    from peftqa import __version__
    from peftqa.cli import commands

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == version  # the fallback below says the same as the installed metadata
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"peftqa {version}"

    def not_installed(name: str) -> str:
        raise commands.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(commands.metadata, "version", not_installed)
    assert commands.package_version() == __version__


def _refused(capsys, *argv: str) -> str:
    """The one line a command refuses `argv` with (exit status 2, whether argparse or a config says no)."""
    try:
        code = main(list(argv))
    except SystemExit as exited:
        code = exited.code
    err = capsys.readouterr().err
    _assert_one_line_error(code, err)
    return err.strip()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--epochs", "inf"], "--epochs: must be a finite number > 0, got inf"),
        (["--seed", "-1"], "--seed: must be a whole number in [0, 4294967295], got -1"),
        (["--checkpoint-every-steps", "0"], "--checkpoint-every-steps: must be a whole number >= 1, got 0"),
        (["--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
        (["--weight-decay", "nan"], "--weight-decay: must be a finite number >= 0, got nan"),
        (["--max-grad-norm", "nan"], "--max-grad-norm: must be a finite number > 0, got nan"),
        (["--null-threshold", "nan"], "--null-threshold: must be a finite number, got nan"),
        (["--target-modules", "(q|"], "--target-modules: not a valid regular expression"),
        (["--eval-split", "test"], "--eval-split: must be one of dev, validation, got 'test'"),
        (["--eval-growth", "0.5"], "--eval-growth: must be a finite number >= 1, got 0.5"),
        (["--validation-limit", "0"], "--validation-limit: must be a whole number >= 1, got 0"),
    ],
)
def test_a_bad_number_or_name_is_refused_before_any_folder(capsys, tmp_path, flags, fragment):
    run_dir = tmp_path / "run"
    err = _refused(capsys, "train", "--model", "/no/such/model", "--output-dir", str(run_dir), *flags)
    assert fragment in err and not run_dir.exists()


def _train_until_the_model(tmp_path, tiny_bert_dir, squad_dir, *flags: str) -> list[str]:
    """train's arguments for a tiny run that gets as far as loading data and model."""
    return [
        "train", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--output-dir", str(tmp_path / "run"),
        "--max-length", "128", "--doc-stride", "32", "--max-steps", "1", *flags,
    ]  # fmt: skip


def test_target_modules_that_match_no_layer_are_refused_before_the_run_folder(
    capsys, tmp_path, tiny_bert_dir, squad_dir
):
    err = _refused(capsys, *_train_until_the_model(tmp_path, tiny_bert_dir, squad_dir, "--target-modules", "q_linn"))
    assert "--target-modules 'q_linn' matches no layer of this model" in err and "query" in err
    err = _refused(
        capsys, *_train_until_the_model(tmp_path, tiny_bert_dir, squad_dir, "--target-modules", r".*\.nope$")
    )
    assert "matches no layer" in err and not (tmp_path / "run").exists()


def test_a_peft_config_peft_applies_but_cannot_train_is_refused(capsys, tmp_path, tiny_bert_dir, squad_dir):
    config = tmp_path / "poly.json"  # Polytropon needs task ids in every forward pass
    config.write_text(json.dumps({"peft_type": "POLY", "target_modules": ["query", "value"]}))
    flags = ["--method", "peft", "--peft-config", str(config)]
    err = _refused(capsys, *_train_until_the_model(tmp_path, tiny_bert_dir, squad_dir, *flags))
    assert "peft applies it, but a training step fails" in err and not (tmp_path / "run").exists()


def test_an_unreachable_mlflow_store_is_one_line_before_any_folder(capsys, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{probe.getsockname()[1]}")
        err = _refused(capsys, "train", "--report-to", "mlflow", "--output-dir", str(tmp_path / "run"))
    assert "--report-to mlflow: cannot reach the tracking store http://127.0.0.1:" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--port", "70000"], "--port: must be a whole number in [1, 65535], got 70000"),
        (["serve", "--port", "0"], "--port: must be a whole number in [1, 65535], got 0"),
        (["serve", "--threads", "0"], "--threads: must be a whole number >= 1, got 0"),
        (["predict", "RUN", "--question", "q?", "--context", "c", "--top-k", "0"], "--top-k: must be a whole number"),
        (["predict", "RUN", "--question", "q?", "--context", "c", "--top-k", "-1"], "--top-k: must be a whole number"),
        (["sweep", "--max-steps", "3"], "unrecognized arguments: --max-steps 3"),
        (["sweep", "--lr", "1e-3"], "unrecognized arguments: --lr 1e-3"),
        (["sweep", "--eval-split", "dev"], "unrecognized arguments: --eval-split dev"),
        (["sweep", "--epochs", "nan"], "--epochs: must be a finite number > 0, got nan"),
        (["sweep", "--eval-growth", "2"], "unrecognized arguments: --eval-growth 2"),
        (["sweep", "--first-rung", "0"], "--first-rung: must be a finite number in (0, 1], got 0"),
        (["sweep", "--halving-factor", "1"], "--halving-factor: must be a whole number >= 2, got 1"),
        (["study", "--budgets", "250,many"], "--budgets expects comma-separated whole numbers of questions"),
        (["study", "--seeds", "0"], "--seeds: must be a whole number >= 1, got 0"),
        (["train", "--epochs", "three"], "argument --epochs: expected float, got 'three'"),
    ],
)
def test_other_commands_refuse_bad_values_in_one_line(capsys, argv, fragment):
    assert fragment in _refused(capsys, *argv)
