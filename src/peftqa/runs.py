"""The run directory: what a run writes, written atomically, and the one loader that train,
evaluate, predict and the web page share.

    RUN_DIR/
      adapter/ or model/   trained weights (adapter + QA head, or the whole model)
      tokenizer/           the tokenizer the features were built with
      run.json             every setting, package versions, git commit, device, data MD5s
      metrics.json         exact_match, f1, parameter counts, timings, per-epoch history
      predictions.json     {question id: answer}, the official predictions format
      scores.jsonl         per question: id, title, exact_match, f1, prediction
      loss_curve.png       train and dev loss per epoch
      checkpoint/          only while training: what --resume needs
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.backbone import load_qa_model, load_tokenizer, resolve_model
from peftqa.config import RunConfig
from peftqa.errors import PeftqaError
from peftqa.methods import get_method

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
PREDICTIONS_JSON = "predictions.json"
SCORES_JSONL = "scores.jsonl"  # one line per scored question: id, title, exact_match, f1, prediction
TOKENIZER_DIR = "tokenizer"
LOSS_CURVE = "loss_curve.png"
_VERSIONED_PACKAGES = ("peftqa", "torch", "transformers", "peft", "tokenizers", "numpy", "safetensors")


def write_scores(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Per-question scores, one JSON object a line, so any comparison can be recomputed without the model."""
    files.write_jsonl_atomic(path, rows)


def read_scores(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A run's scores.jsonl as {question id: row}; {} for a run written before the file existed.

    Raises:
        PeftqaError: a line is not a JSON object with an id and numeric exact_match and f1 (named by line).
    """
    path = Path(run_dir) / SCORES_JSONL
    if not path.is_file():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise PeftqaError(f"{path}:{number}: not valid JSON ({error})") from error
            if not (
                isinstance(row, dict)
                and isinstance(row.get("id"), str)
                and all(isinstance(row.get(k), int | float) for k in ("exact_match", "f1"))
            ):
                raise PeftqaError(f"{path}:{number}: needs a string 'id' and numbers 'exact_match' and 'f1'")
            rows[row["id"]] = row
    return rows


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout that tracks the peftqa source, else None.

    Args:
        folder: the package folder to ask about; default, the folder of this installed package.

    A package installed into a .venv inside someone else's repository, or a copied src/, sits
    untracked inside that repository: `git rev-parse HEAD` there would name a commit that does not
    hold this code. So a commit is recorded only when git tracks files of `folder` itself.
    """
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    tracked = _git(folder, "ls-files", "--error-unmatch", "--", ".")
    if tracked is None:
        return None
    return _git(folder, "rev-parse", "HEAD") or None


def _git(folder: Path, *arguments: str) -> str | None:
    """stdout of `git ARGUMENTS` run in `folder`; None when git is missing, fails or hangs."""
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=folder, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


def display_names(folders: Sequence[Path]) -> list[str]:
    """Run folder names for tables and the web page; `parent/name` where two runs share a folder name."""
    names = [folder.name for folder in folders]
    return [
        f"{folder.parent.name}/{folder.name}" if names.count(folder.name) > 1 else folder.name for folder in folders
    ]


@dataclass
class LoadedRun:
    """A trained run, ready to predict."""

    run_dir: Path
    settings: dict[str, Any]  # run.json
    metrics: dict[str, Any]  # metrics.json ({} while missing)
    model: Any
    tokenizer: Any

    @property
    def method(self) -> str:
        return self.settings["config"]["method"]

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.settings["config"])


def check_run_dir(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The run directory and its run.json, or a PeftqaError naming what is missing."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise PeftqaError(f"{folder}: no such run directory")
    settings = files.read_json(folder / RUN_JSON)
    if not isinstance(settings, dict) or "config" not in settings or "base_model_path" not in settings:
        raise PeftqaError(f"{folder / RUN_JSON}: not a peftqa run.json (no 'config' or 'base_model_path')")
    spec = get_method(settings["config"].get("method", "?"))
    for needed in (spec.artifact, TOKENIZER_DIR):
        if not (folder / needed).is_dir():
            raise PeftqaError(f"{folder}: '{needed}/' is missing (the run did not finish, or files were removed)")
    return folder, settings


def load_run(run_dir: str | os.PathLike, base_model=None, device: str = "cpu") -> LoadedRun:
    """Load a finished run: base model (given, or from run.json), then the method's weights.

    Args:
        run_dir: a run directory written by `peftqa train`.
        base_model: a freshly loaded base QA model to build on; the web page passes models that
            share their frozen weights with other runs on the same backbone.
        device: where to put the model.
    """
    folder, settings = check_run_dir(run_dir)
    spec = get_method(settings["config"]["method"])
    if base_model is None:
        base_model = load_qa_model(base_source(settings))
    try:
        model = spec.load(base_model, folder)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise PeftqaError(f"{folder}: cannot load '{spec.artifact}/' ({str(error).splitlines()[0]})") from error
    tokenizer = load_tokenizer(str(folder / TOKENIZER_DIR))
    metrics_path = folder / METRICS_JSON
    metrics = files.read_json(metrics_path) if metrics_path.is_file() else {}
    return LoadedRun(folder, settings, metrics, model.to(device).eval(), tokenizer)


def base_source(settings: dict[str, Any]) -> str:
    """Where the base weights are: the recorded path if it still exists, else resolve the name again."""
    recorded = settings.get("base_model_path")
    if recorded and Path(recorded).is_dir():
        return recorded
    return resolve_model(settings["config"]["model"])
