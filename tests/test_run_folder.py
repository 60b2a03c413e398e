"""inference.run_folder: the run directory and the export folder (reading scores, the git commit), and one
loader for both."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.export import export_run
from peftqa.export.verify import largest_difference, logits, probe_batch
from peftqa.inference import run_folder
from peftqa.inference.run_folder import git_commit
from peftqa.model.onnx_runtime import OnnxQAModel
from tests.helpers import train_tiny_runs

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *arguments: str) -> str:
    identity = ["-c", "user.email=test@example.com", "-c", "user.name=test", "-c", "commit.gpgsign=false"]
    completed = subprocess.run(
        ["git", *identity, *arguments], cwd=repo, capture_output=True, text=True, timeout=30, check=True
    )
    return completed.stdout.strip()


@needs_git
def test_git_commit_only_when_the_package_itself_is_tracked(tmp_path):
    repo = tmp_path / "someone-elses-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("their project\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "their commit")
    # A copy of the package inside their repository, not tracked by it (like a .venv install).
    package = repo / ".venv" / "site-packages" / "peftqa"
    package.mkdir(parents=True)
    shutil.copy(run_folder.__file__, package / "runs.py")
    assert git_commit(package) is None
    _git(repo, "add", ".venv/site-packages/peftqa/runs.py")
    _git(repo, "commit", "-q", "-m", "track the package")
    assert git_commit(package) == _git(repo, "rev-parse", "HEAD")


def test_git_commit_is_none_outside_any_repository(tmp_path):
    assert git_commit(tmp_path) is None  # no repository, or one that tracks nothing here
    assert git_commit(tmp_path / "missing") is None


def test_read_scores_needs_the_file_and_names_a_bad_line(tmp_path):
    with pytest.raises(PeftqaError, match="scores.jsonl: no such file"):
        run_folder.read_scores(tmp_path)
    rows = '{"id": "a", "exact_match": 100.0, "f1": 100.0}\n\n{"id": "b", "f1": 1}\n'
    (tmp_path / run_folder.SCORES_JSONL).write_text(rows)
    with pytest.raises(PeftqaError, match=r"scores.jsonl:3: needs a string 'id'"):
        run_folder.read_scores(tmp_path)
    (tmp_path / run_folder.SCORES_JSONL).write_text('{"id": "a", "exact_match": 0, "f1": 40.0, "title": "T"}\n')
    assert run_folder.read_scores(tmp_path) == {"a": {"id": "a", "exact_match": 0, "f1": 40.0, "title": "T"}}


# --- export folders, through the same loader -------------------------------------------------------


@pytest.fixture(scope="module")
def run_and_exports(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    """A tiny LoRA run, and its hf and onnx exports."""
    root = tmp_path_factory.mktemp("runs-exports")
    run = train_tiny_runs(("lora",), tiny_bert_dir, squad_dir, root)["lora"]
    for fmt in ("hf", "onnx"):
        export_run(run, root / fmt, fmt, log=lambda line: None)
    return {"run": run, "hf": root / "hf", "onnx": root / "onnx"}


@pytest.mark.parametrize("fmt", ["hf", "onnx"])
def test_load_run_reads_an_export_as_the_run_it_came_from(run_and_exports, fmt):
    run = run_folder.load_run(run_and_exports["run"])
    exported = run_folder.load_run(run_and_exports[fmt])
    assert run_folder.is_export(run_and_exports[fmt]) and not run_folder.is_export(run_and_exports["run"])
    assert exported.run_dir == run_and_exports[fmt]
    assert exported.settings["export"]["format"] == fmt and exported.settings["export"]["source_run"] == "lora"
    assert exported.config == run.config and exported.method == "lora"
    assert (exported.metrics["exact_match"], exported.metrics["f1"]) == (run.metrics["exact_match"], run.metrics["f1"])
    assert isinstance(exported.model, OnnxQAModel) == (fmt == "onnx")
    assert exported.tokenizer.get_vocab() == run.tokenizer.get_vocab()
    batch = probe_batch(run.tokenizer, run.config.scoring)
    difference = largest_difference(
        logits(exported.model, batch), logits(run.model, batch), batch["attention_mask"].numpy()
    )
    assert difference <= 1e-4


def test_load_run_gives_onnx_runtime_the_threads(run_and_exports):
    loaded = run_folder.load_run(run_and_exports["onnx"], threads=1)
    assert loaded.model.session.get_session_options().intra_op_num_threads == 1


def test_an_int8_export_shows_its_own_figures(run_and_exports, tmp_path):
    folder = tmp_path / "int8"
    shutil.copytree(run_and_exports["onnx"], folder)
    info = files.read_json(folder / run_folder.EXPORT_JSON)
    int8 = {"exact_match": 1.5, "f1": 2.5, "exact_match_ci": [1.0, 2.0], "f1_ci": [2.0, 3.0], "eval_questions": 4}
    info["int8"] = {"fp32": {**int8, "f1": 9.0}, "int8": int8}
    files.write_json_atomic(folder / run_folder.EXPORT_JSON, info)
    metrics = run_folder.load_run(folder).metrics
    assert {key: metrics[key] for key in ("exact_match", "f1", "exact_match_ci", "f1_ci")} == {
        key: int8[key] for key in ("exact_match", "f1", "exact_match_ci", "f1_ci")
    }
    assert metrics["eval_questions"] == info["metrics"]["eval_questions"]  # the rest as the run scored it


def test_load_run_refuses_a_base_model_for_an_export_and_a_broken_description(run_and_exports, tmp_path):
    with pytest.raises(PeftqaError, match="takes no base model"):
        run_folder.load_run(run_and_exports["hf"], base_model=object())
    (tmp_path / run_folder.EXPORT_JSON).write_text(json.dumps({"format": "hf"}))
    with pytest.raises(PeftqaError, match="not a peftqa export description"):
        run_folder.load_run(tmp_path)
