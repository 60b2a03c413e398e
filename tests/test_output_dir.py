"""training/output_dir: `peftqa train` writes only into a new folder or a run's own, never among the
user's files unasked, never inside another run, and --resume only continues a run that is there; all
refused in one line before any data or model loads. Also the modes of what a run writes."""

from __future__ import annotations

import json
import os

import pytest

from peftqa.cli.commands import main
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.training.output_dir import check_output_dir, check_resumable


def _train(tiny_bert_dir, squad_dir, out, *extra) -> list[str]:
    return [
        "train", "--model", str(tiny_bert_dir), "--data-dir", str(squad_dir), "--output-dir", str(out),
        "--max-length", "128", "--doc-stride", "32", "--batch-size", "2", "--max-steps", "1", "--precision", "fp32",
        *extra,
    ]  # fmt: skip


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_folder_of_the_users_own_files_is_refused_unless_force(tiny_bert_dir, squad_dir, tmp_path, capsys):
    mine = tmp_path / "Documents"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    assert main(_train(tiny_bert_dir, squad_dir, mine)) == 2
    err = _one_line_error(capsys)
    assert "not a peftqa run" in err and "--force" in err
    assert sorted(p.name for p in mine.iterdir()) == ["README.md"]  # nothing written
    assert main(_train(tiny_bert_dir, squad_dir, mine, "--force")) == 0
    assert (mine / "README.md").read_text() == "my notes" and (mine / run_folder.METRICS_JSON).is_file()


@pytest.mark.parametrize("where", ["a-file", "a-file/run"])
def test_an_output_dir_that_is_or_is_under_a_file_is_one_line(tiny_bert_dir, squad_dir, tmp_path, capsys, where):
    (tmp_path / "a-file").write_text("not a folder")
    assert main(_train(tiny_bert_dir, squad_dir, tmp_path / where)) == 2
    assert "not a folder" in _one_line_error(capsys)
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_an_unwritable_output_dir_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a folder of another user (tests run as root)
    with pytest.raises(PeftqaError, match="cannot write to --output-dir .*: no permission to write in"):
        check_output_dir(tmp_path / "run")


def test_a_run_inside_another_runs_folder_is_refused(tiny_lora_run, tmp_path):
    with pytest.raises(PeftqaError, match="is inside the run folder"):
        check_output_dir(tiny_lora_run / "nested")
    with pytest.raises(PeftqaError, match="is inside the run folder"):
        check_output_dir(tiny_lora_run / run_folder.TOKENIZER_DIR / "deeper" / "run")


def test_a_finished_run_needs_resume_and_an_unfinished_one_is_written_over(tiny_lora_run, tmp_path):
    with pytest.raises(PeftqaError, match="already holds a run; pass --resume"):
        check_output_dir(tiny_lora_run)
    check_output_dir(tiny_lora_run, resume=True)
    failed = tmp_path / "failed"  # a run that stopped before its first checkpoint: run.json only
    failed.mkdir()
    (failed / run_folder.RUN_JSON).write_text("{}")
    check_output_dir(failed)


def test_resume_needs_a_run_to_continue(tiny_bert_dir, squad_dir, tmp_path, capsys):
    assert main(_train(tiny_bert_dir, squad_dir, tmp_path / "missing", "--resume")) == 2
    assert "no run to continue" in _one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(_train(tiny_bert_dir, squad_dir, tmp_path / "empty", "--resume")) == 2
    assert "holds no peftqa run" in _one_line_error(capsys)
    assert not list((tmp_path / "empty").iterdir()) and not (tmp_path / "missing").exists()
    with pytest.raises(PeftqaError, match="name that folder"):
        check_resumable(None)


def test_resume_of_a_run_json_of_the_wrong_shape_is_one_line(tiny_bert_dir, squad_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / run_folder.RUN_JSON).write_text(json.dumps([1, 2]))
    assert main(_train(tiny_bert_dir, squad_dir, run, "--resume")) == 2
    assert "run.json: not a peftqa run.json (found a list" in _one_line_error(capsys)


def test_every_file_of_a_run_has_the_mode_of_any_new_file(tiny_lora_run):
    from peftqa.files import current_umask

    expected = 0o666 & ~current_umask()
    modes = {
        str(p.relative_to(tiny_lora_run)): p.stat().st_mode & 0o777 for p in tiny_lora_run.rglob("*") if p.is_file()
    }
    assert modes and all(mode == expected for mode in modes.values()), modes
