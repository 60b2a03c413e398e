"""The run directory and the export folder: what they hold, and the one loader (load_run) that
evaluate, predict, export and the web page share, for either.

    RUN_DIR/ (peftqa train)
      adapter/ or model/   trained weights (adapter + QA head, or the whole model)
      tokenizer/           the tokenizer the features were built with
      run.json             every setting, package versions, git commit, device, data files and fingerprints
      metrics.json         exact_match, f1, parameter counts, timings, per-epoch history, every step's loss;
                           with --eval-every-steps every held-out evaluation, best_step, stopped_at_step; on SQuAD 2.0
                           data also null_threshold and the official HasAns_* / NoAns_* / best_* figures
      predictions.json     {question id: answer}, the official predictions format
      scores.jsonl         per question: id, title, exact_match, f1, prediction
      loss_curve.png       train and dev loss per epoch
      checkpoint/          only while training: what --resume needs
      tensorboard/         --report-to tensorboard: the event files (unless --tracking-dir)
      tracking.json        --report-to: where the run is tracked (the MLflow run id), so --resume goes on there

    EXPORT_DIR/ (peftqa export)
      config.json, model.safetensors (hf) or model.onnx (onnx), tokenizer files
      peftqa.json          format, source run, scoring settings, the run's figures, run.json's config
      run_predictions.json the run's own predictions.json, to count identical answers
      README.md            the model card
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_files
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model, load_tokenizer, resolve_model
from peftqa.model.onnx_runtime import OnnxQAModel, require_onnx
from peftqa.settings.run_config import RunConfig, recorded_config

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
PREDICTIONS_JSON = "predictions.json"
SCORES_JSONL = "scores.jsonl"  # one line per scored question: id, title, exact_match, f1, prediction
TOKENIZER_DIR = "tokenizer"
LOSS_CURVE = "loss_curve.png"
EXPORT_JSON = "peftqa.json"
RUN_PREDICTIONS_JSON = "run_predictions.json"
MODEL_CARD = "README.md"
ONNX_FILE = "model.onnx"
EXPORT_FORMATS = ("hf", "onnx")
_VERSIONED_PACKAGES = ("peftqa", "torch", "transformers", "peft", "tokenizers", "numpy", "safetensors")


def write_scores(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Per-question scores, one JSON object a line, so any comparison can be recomputed without the model."""
    files.write_jsonl_atomic(path, rows)


def read_scores(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A run's scores.jsonl as {question id: row}.

    Raises:
        PeftqaError: the file is missing, or a line is not a JSON object with an id and numeric
            exact_match and f1 (named by line).
    """
    path = Path(run_dir) / SCORES_JSONL
    if not path.is_file():
        raise PeftqaError(f"{path}: no such file (the run did not finish, or files were removed)")
    rows: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PeftqaError(f"{path}: cannot read it as UTF-8 text ({error})") from None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        row = files.loads_json(line, f"{path}:{number}")
        if not (
            isinstance(row, dict)
            and isinstance(row.get("id"), str)
            and all(is_score(row.get(k)) for k in ("exact_match", "f1"))
        ):
            raise PeftqaError(f"{path}:{number}: needs a string 'id' and numbers 'exact_match' and 'f1' from 0 to 100")
        rows[row["id"]] = row
    return rows


def is_score(value: Any) -> bool:
    """An EM or F1 figure: a finite number from 0 to 100 (JSON's booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100


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
    """A trained run (or its export), ready to predict."""

    run_dir: Path  # the run directory, or the export folder
    settings: dict[str, Any]  # run.json; of an export: {"config": run.json's config, "export": peftqa.json}
    metrics: dict[str, Any]  # metrics.json ({} while missing); of an export: peftqa.json's figures
    model: Any
    tokenizer: Any

    @property
    def method(self) -> str:
        return self.settings["config"]["method"]

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(recorded_config(self.settings))

    @property
    def null_threshold(self) -> float | None:
        """The threshold the run answers "no answer" by (trained on SQuAD 2.0 data); None: it always answers."""
        value = self.metrics.get("null_threshold")
        return None if value is None else float(value)


def check_run_dir(run_dir: str | os.PathLike, config_checked: bool = True) -> tuple[Path, dict[str, Any]]:
    """The run directory and its run.json (checked: `run_files.read_settings`), or a PeftqaError naming
    what is missing or wrong."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise PeftqaError(f"{folder}: no such run directory")
    settings = run_files.read_settings(folder / RUN_JSON, config_checked)
    spec = get_method(settings["config"].get("method", "?"))
    for needed in (spec.artifact, TOKENIZER_DIR):
        if not (folder / needed).is_dir():
            raise PeftqaError(f"{folder}: '{needed}/' is missing (the run did not finish, or files were removed)")
    return folder, settings


def load_run(
    path: str | os.PathLike, base_model: Any = None, device: str = "cpu", threads: int | None = None
) -> LoadedRun:
    """Load a finished run directory, or a folder written by `peftqa export` (hf or onnx), ready to predict.

    Args:
        path: a run directory written by `peftqa train`, or an export folder.
        base_model: run directories only: a freshly loaded base QA model to build on (default: loaded
            from run.json); the web page passes models that share their frozen weights with other runs
            on the same backbone.
        device: where to put the model (an ONNX model runs on the CPU).
        threads: ONNX exports only: ONNX Runtime's intra-op threads (None: its default, every core).
    """
    if is_export(path):
        if base_model is not None:
            raise PeftqaError(f"{path}: an export holds its whole model; it takes no base model")
        return _load_export(Path(path), device, threads)
    return _load_run_dir(path, base_model, device)


def _load_run_dir(run_dir: str | os.PathLike, base_model: Any, device: str) -> LoadedRun:
    """The run's base model (given, or from run.json), then the method's weights."""
    folder, settings = check_run_dir(run_dir)
    spec = get_method(settings["config"]["method"])
    if base_model is None:
        base_model = load_qa_model(base_source(settings))
    metrics = run_files.read_metrics(folder / METRICS_JSON)  # before any weights load: a quick refusal
    try:
        model = spec.load(base_model, folder)
    except _DAMAGED_WEIGHTS as error:
        raise PeftqaError(f"{folder}: cannot load '{spec.artifact}/' ({_first_line(error)})") from error
    tokenizer = load_tokenizer(str(folder / TOKENIZER_DIR))
    return LoadedRun(folder, settings, metrics, model.to(device).eval(), tokenizer)


# What loading a damaged weights or config file raises: anything. safetensors has its own error type,
# and peft acts on every field of adapter_config.json (a float where an index was is an IndexError deep
# in torch, a `megatron_config` imports megatron): the folder is the user's, so whatever its loading
# raises is said as one line naming it.
_DAMAGED_WEIGHTS = (Exception,)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def base_source(settings: dict[str, Any]) -> str:
    """Where the base weights are: the recorded path if it still exists, else resolve the name again."""
    recorded = settings.get("base_model_path")
    if recorded and Path(recorded).is_dir():
        return recorded
    return resolve_model(settings["config"]["model"])


def is_export(folder: str | os.PathLike) -> bool:
    """Whether `folder` was written by `peftqa export` (a run directory has run.json instead)."""
    return (Path(folder) / EXPORT_JSON).is_file() and not (Path(folder) / RUN_JSON).is_file()


def read_export_info(folder: str | os.PathLike) -> dict[str, Any]:
    """peftqa.json of an exported folder, checked for what evaluation and serving need."""
    path = Path(folder) / EXPORT_JSON
    return run_files.check_export_info(files.read_json(path), path)


def load_saved_model(folder: str | os.PathLike) -> Any:
    """The transformers QA model of an hf export in fp32, in eval mode."""
    return load_qa_model(str(folder)).eval()


def _load_export(folder: Path, device: str, threads: int | None) -> LoadedRun:
    """An export as a LoadedRun: run.json's settings and metrics.json's figures come from peftqa.json."""
    info = read_export_info(folder)
    try:
        if info["format"] == "onnx":
            require_onnx()
            model: Any = OnnxQAModel(folder / ONNX_FILE, threads=threads)
        else:
            model = load_saved_model(folder).to(device)
    except PeftqaError:
        raise
    except _DAMAGED_WEIGHTS as error:
        raise PeftqaError(f"{folder}: cannot load the exported model ({_first_line(error)})") from error
    settings = {"config": info["config"], "export": info, "data_files": info.get("data_files")}
    metrics = dict(info.get("metrics") or {})
    if info.get("int8"):  # the page shows the figures of the model it serves: int8's own
        int8 = info["int8"]["int8"]
        metrics.update({key: int8[key] for key in ("exact_match", "f1", "exact_match_ci", "f1_ci") if key in int8})
    return LoadedRun(folder, settings, metrics, model, load_tokenizer(str(folder)))
