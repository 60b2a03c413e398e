"""Damaged run folders: a file of a finished run removed, cut short, or (JSON) with a value anywhere
replaced by a hostile one or the wrong shape. `evaluate`, `predict`, `export` and `report` must exit 0
or 2 (one line on stderr, no traceback), write nothing new on 2 and never change a file of the run;
`serve` must skip a run it cannot load and answer every page and API request without a 500."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftqa.cli.commands import main
from tests.helpers import json_paths, raw_json, replaced_json

_names = itertools.count()
COMMANDS = ("evaluate", "predict", "export", "report")
QUESTION = "Who wrote Pride and Prejudice?"
CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _damage(data: st.DataObject, run: Path) -> str:
    """Damage one file of `run` as hypothesis draws it; returns what was done (for the failure report)."""
    every = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file())
    kind = data.draw(st.sampled_from(["remove", "truncate", "json", "json"]), label="damage")
    choices = [p for p in every if p.suffix in (".json", ".jsonl")] if kind == "json" else every
    target = run / data.draw(st.sampled_from(choices), label="file")
    content = target.read_bytes()
    if kind == "remove":
        target.unlink()
    elif kind == "truncate":
        target.write_bytes(content[: data.draw(st.integers(0, max(0, len(content) - 1)), label="kept bytes")])
    elif target.suffix == ".jsonl":  # one line of scores.jsonl
        lines = content.decode().splitlines()
        number = data.draw(st.integers(0, len(lines) - 1), label="line")
        row = json.loads(lines[number])
        lines[number] = replaced_json(row, data.draw(st.sampled_from(list(json_paths(row)))), data.draw(raw_json))
        target.write_text("\n".join(lines) + "\n")
    else:
        value = json.loads(content)
        places = [path for path in json_paths(value) if len(path) <= 3][:300]  # tokenizer.json: 30,000 places
        target.write_text(replaced_json(value, data.draw(st.sampled_from(places), label="at"), data.draw(raw_json)))
    return f"{kind} {target.relative_to(run)}"


def _argv(command: str, run: Path, out: Path) -> list[str]:
    return {
        "evaluate": ["evaluate", str(run)],
        "predict": ["predict", str(run), "--question", QUESTION, "--context", CONTEXT],
        "export": ["export", str(run), "--out", str(out / "export")],
        "report": ["report", str(run), "--out", str(out / "report")],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_run_folder_exits_0_or_2_with_one_line_and_writes_nothing(
    tiny_lora_run, tmp_path, capsys, command, data
):
    example = tmp_path / f"example-{next(_names)}"
    run, out = example / "lora", example / "out"
    shutil.copytree(tiny_lora_run, run)
    out.mkdir()
    done = _damage(data, run)
    before = _snapshot(run)
    capsys.readouterr()
    status = main(_argv(command, run, out))
    err = capsys.readouterr().err
    assert status in (0, 2), (done, err)
    assert "Traceback" not in err, (done, err)
    if status == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("peftqa: error: "), (done, err)
        assert not list(out.iterdir()), (done, err)  # no export, no report, no hidden staging folder
    assert _snapshot(run) == before, done


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_serve_skips_a_damaged_run_and_no_request_fails(tiny_lora_run, tmp_path, data):
    from peftqa.serve import create_app

    run = tmp_path / f"example-{next(_names)}" / "lora"
    shutil.copytree(tiny_lora_run, run)
    done = _damage(data, run)
    app = create_app({"TESTING": True, "RUN_DIRS": [run]})  # TESTING: an exception fails the test, not a 500
    client = app.test_client()
    body = {"context": CONTEXT, "question": QUESTION, "answers": ["Jane Austen"]}
    responses = [
        client.get("/"),
        client.get("/healthz"),
        client.get("/api/models"),
        client.post("/", data={"context": CONTEXT, "question": QUESTION, "answers": "Jane Austen"}),
        client.post("/api/predict", json=body),
    ]
    for response in responses:
        assert response.status_code < 500, (done, response.status_code)
    models = responses[2].get_json()["models"]
    assert len(models) in (0, 1), done
    for model in models:
        for key in ("dev_exact_match", "dev_f1", "trainable_percent", "null_threshold"):
            assert model[key] is None or isinstance(model[key], int | float), (done, key)
