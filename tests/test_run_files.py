"""inference/run_files: run.json, metrics.json, predictions.json and peftqa.json checked when read, so
a damaged run folder is one line naming the file and the field in every command that reads it."""

from __future__ import annotations

import json
import shutil

import pytest

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.inference import run_files, run_folder

QUESTION = "Who wrote Pride and Prejudice?"
CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."


def _metrics(run, change):
    path = run / run_folder.METRICS_JSON
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


# The damage found, and the words its one line must hold.
DAMAGE = {
    "truncated weights": (
        lambda run: (run / "adapter" / "adapter_model.safetensors").write_bytes(
            (run / "adapter" / "adapter_model.safetensors").read_bytes()[:100]
        ),
        "cannot load 'adapter/'",
    ),
    "garbage weights": (
        lambda run: (run / "adapter" / "adapter_model.safetensors").write_bytes(b"garbage" * 10),
        "cannot load 'adapter/'",
    ),
    "metrics null": (
        lambda run: _metrics(run, lambda m: None),
        "not a peftqa metrics.json (found null",
    ),
    "metrics a list": (
        lambda run: _metrics(run, lambda m: []),
        "not a peftqa metrics.json (found a list",
    ),
    "metrics {}": (lambda run: _metrics(run, lambda m: {}), "(the field 'exact_match' is missing"),
    "f1 high": (
        lambda run: _metrics(run, lambda m: {**m, "f1": "high"}),
        "field 'f1' should be a number from 0 to 100",
    ),
    "no metrics": (lambda run: (run / run_folder.METRICS_JSON).unlink(), "no metrics.json: the run did not finish"),
    "config a list": (
        lambda run: (run / run_folder.RUN_JSON).write_text(
            json.dumps({**json.loads((run / run_folder.RUN_JSON).read_text()), "config": []})
        ),
        "run.json: field 'config' should be an object",
    ),
    "adapter config wrong": (
        lambda run: (run / "adapter" / "adapter_config.json").write_text("[1]"),
        "cannot load 'adapter/'",
    ),
    "no tokenizer config": (
        lambda run: (run / run_folder.TOKENIZER_DIR / "tokenizer_config.json").unlink(),
        "the tokenizer has no padding",
    ),
}
COMMANDS = {
    "evaluate": lambda run, out: ["evaluate", str(run)],
    "predict": lambda run, out: ["predict", str(run), "--question", QUESTION, "--context", CONTEXT],
    "export": lambda run, out: ["export", str(run), "--out", str(out / "export")],
    "report": lambda run, out: ["report", str(run), "--out", str(out / "report")],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_each_damage_is_one_line_and_exit_2_in_every_command(tiny_lora_run, tmp_path, capsys, damage, command):
    run, out = tmp_path / "lora", tmp_path / "out"
    shutil.copytree(tiny_lora_run, run)
    out.mkdir()
    spoil, words = DAMAGE[damage]
    spoil(run)
    assert main(COMMANDS[command](run, out)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and words in err, err
    assert not list(out.iterdir())


def test_metrics_are_checked_field_by_field(tmp_path):
    path = tmp_path / run_folder.METRICS_JSON
    good = {"exact_match": 50.0, "f1": 60.0, "exact_match_ci": [40, 60], "history": [], "null_threshold": None}
    path.write_text(json.dumps(good))
    assert run_files.read_metrics(path) == good
    for change, words in [
        ({"f1": 101}, "field 'f1' should be a number from 0 to 100, found 101"),
        ({"f1": True}, "field 'f1' should be a number"),
        ({"f1_ci": [1]}, "field 'f1_ci' should be two numbers"),
        ({"trainable_params": -1}, "field 'trainable_params' should be a whole number"),
        ({"history": [{"epoch": 1}]}, "field 'history' should be a list of epochs"),
        ({"null_threshold": "x"}, "field 'null_threshold' should be a number or null"),
    ]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(PeftqaError, match=words):
            run_files.read_metrics(path)
    path.write_text(json.dumps({key: value for key, value in good.items() if key != "f1"}))
    with pytest.raises(PeftqaError, match="the field 'f1' is missing"):
        run_files.read_metrics(path)
    path.write_text(json.dumps(good))
    with pytest.raises(PeftqaError, match="the field 'trainable_params' is missing"):
        run_files.read_metrics(path, needed=("trainable_params",))


def test_a_diverged_runs_null_losses_are_read(tmp_path):
    path = tmp_path / run_folder.METRICS_JSON
    epoch = {"epoch": 1, "step": 2, "train_loss": None, "eval_loss": None, "exact_match": 0.0, "f1": 0.0}
    path.write_text(json.dumps({"exact_match": 0.0, "f1": 0.0, "eval_loss": None, "history": [epoch]}))
    assert run_files.read_metrics(path)["history"][0]["train_loss"] is None


def test_run_json_config_fields_have_the_types_run_config_declares(tiny_lora_run, tmp_path):
    settings = json.loads((tiny_lora_run / run_folder.RUN_JSON).read_text())
    path = tmp_path / run_folder.RUN_JSON
    for change, words in [
        ({"epochs": "3"}, "config field 'epochs' should be a number, found \"3\""),
        ({"batch_size": 2.5}, "config field 'batch_size' should be a whole number"),
        ({"data_dir": 5}, "config field 'data_dir' should be a string or null"),
        ({"method": "no-such-method"}, "config: unknown method"),
        ({"max_length": 5}, r"run\.json: config: --max-length: must be a whole number in \[128, 512\], got 5"),
    ]:
        path.write_text(json.dumps({**settings, "config": {**settings["config"], **change}}))
        with pytest.raises(PeftqaError, match=words):
            run_files.read_settings(path)
    path.write_text(json.dumps({**settings, "data_files": {"dev": {"source": 1}}}))
    with pytest.raises(PeftqaError, match="field 'data_files' should be"):
        run_files.read_settings(path)


def test_predictions_must_map_ids_to_answer_text(tmp_path):
    path = tmp_path / run_folder.PREDICTIONS_JSON
    path.write_text(json.dumps({"q1": "Jane Austen", "q2": ""}))
    assert run_files.read_predictions(path) == {"q1": "Jane Austen", "q2": ""}
    for wrong in ([], {"q1": 1}, None):
        path.write_text(json.dumps(wrong))
        with pytest.raises(PeftqaError, match="expected a JSON object"):
            run_files.read_predictions(path)


def test_an_export_description_is_checked_too(tmp_path):
    path = tmp_path / run_folder.EXPORT_JSON
    good = {"format": "hf", "config": {"method": "lora", "max_length": 128, "doc_stride": 32}, "metrics": {"f1": 5.0}}
    assert run_files.check_export_info(good, path) == good
    for change, words in [
        ({"format": "tflite"}, "field 'format' should be hf or onnx"),
        ({"metrics": {"f1": "high"}}, "metrics: field 'f1' should be a number"),
        ({"int8": {"int8": {"f1": 1}}}, "field 'int8' should be"),
    ]:
        with pytest.raises(PeftqaError, match=words):
            run_files.check_export_info({**good, **change}, path)
