"""serve.discovery: the newest finished run of each method, and folder names the page may show."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from peftqa.inference import run_folder
from peftqa.serve.discovery import newest_runs, public_model_name, public_path


def _run_folder(folder: Path, method: str, finished_ago: float | None) -> None:
    """A run folder as newest_runs reads it: run.json's method, and metrics.json's time once finished."""
    folder.mkdir(parents=True)
    (folder / run_folder.RUN_JSON).write_text(json.dumps({"config": {"method": method}}))
    if finished_ago is not None:
        (folder / run_folder.METRICS_JSON).write_text("{}")
        stamp = time.time() - finished_ago
        os.utime(folder / run_folder.METRICS_JSON, (stamp, stamp))


def test_newest_finished_run_of_each_method_is_found(tmp_path):
    for folder, method, age in (("runs/old", "lora", 100), ("backend/lora", "lora", 10), ("runs/q-ia3", "ia3", 50)):
        _run_folder(tmp_path / folder, method, age)
    _run_folder(tmp_path / "runs" / "unfinished", "lora", None)  # newest, but no metrics.json
    _run_folder(tmp_path / "runs" / "bitfit", "bitfit", 1)  # not one of the methods asked for
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / run_folder.RUN_JSON).write_text("{not json")
    found = newest_runs([tmp_path / "runs", tmp_path / "backend", tmp_path / "missing"])
    assert found == [tmp_path / "backend" / "lora", tmp_path / "runs" / "q-ia3"]
    assert newest_runs([tmp_path / "runs"], methods=("ia3", "bitfit")) == [
        tmp_path / "runs" / "q-ia3",
        tmp_path / "runs" / "bitfit",
    ]


def test_public_path_is_relative_below_the_working_folder_else_the_name_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert public_path(tmp_path / "runs" / "lora") == "runs/lora"
    assert public_path(tmp_path.parent / "elsewhere" / "lora") == "lora"


def test_public_model_name_hides_local_folders_only(tmp_path):
    local = tmp_path / "my-encoder"
    local.mkdir()
    assert public_model_name(str(local)) == "my-encoder"
    assert public_model_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert public_model_name("minilm-l6") == "minilm-l6" and public_model_name(None) is None
