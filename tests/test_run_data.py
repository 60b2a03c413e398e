"""inference/run_data: a run is scored again from the files run.json recorded first, then --data-dir,
its own data directory, and PEFTQA_DATA_DIR, wherever the command is run from."""

from __future__ import annotations

import json
import shutil

from peftqa.cli.commands import main
from peftqa.inference import run_folder
from peftqa.inference.run_data import located_files
from tests.squad_fixtures import write_squad


def _settings(dev_source: str | None, **config) -> dict:
    recorded = {"dev": {"source": dev_source, "fingerprint": "sha256:0"}} if dev_source else {}
    return {"config": {"eval_split": "dev", "data_dir": None, "dev_file": None, **config}, "data_files": recorded}


def test_the_recorded_file_comes_first(tmp_path):
    squad = write_squad(tmp_path / "squad")
    settings = _settings(str(squad / "dev-v1.1.json"), data_dir="somewhere/relative")
    assert located_files(settings["config"], settings, data_dir=str(tmp_path / "given")) == {"data_dir": str(squad)}
    mine = squad / "dev-v1.1.json"
    settings = _settings(str(mine), dev_file="relative/dev.json")
    assert located_files(settings["config"], settings) == {"dev_file": str(mine)}


def test_without_the_recorded_file_data_dir_then_the_runs_own_then_the_environment(tmp_path):
    gone = str(tmp_path / "gone" / "dev-v1.1.json")
    own = write_squad(tmp_path / "own")
    settings = _settings(gone, data_dir=str(own))
    assert located_files(settings["config"], settings, data_dir="given") == {"data_dir": "given"}
    assert located_files(settings["config"], settings) == {"data_dir": str(own)}
    settings = _settings(gone, data_dir="relative/to/another/folder")
    assert located_files(settings["config"], settings) == {"data_dir": None}  # PEFTQA_DATA_DIR, else the cache
    settings = _settings(None, dev_file="squad_v2:validation")  # a dataset name is read as it was given
    assert located_files(settings["config"], settings) == {}


def test_evaluate_of_a_run_from_another_folder_finds_its_questions(tiny_lora_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "copied"
    shutil.copytree(tiny_lora_run, run)
    settings = json.loads((run / run_folder.RUN_JSON).read_text())
    settings["config"]["data_dir"] = "squad"  # typed relative to a folder this test is not in
    (run / run_folder.RUN_JSON).write_text(json.dumps(settings))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(run)]) == 0  # the absolute path run.json recorded
    first = json.loads(capsys.readouterr().out)
    for split in settings["data_files"].values():
        split["source"] = str(tmp_path / "moved" / "dev-v1.1.json")
    (run / run_folder.RUN_JSON).write_text(json.dumps(settings))
    monkeypatch.setenv("PEFTQA_DATA_DIR", str(write_squad(tmp_path / "env")))
    assert main(["evaluate", str(run)]) == 0  # the recorded file is gone: PEFTQA_DATA_DIR
    assert json.loads(capsys.readouterr().out)["f1"] == first["f1"]
