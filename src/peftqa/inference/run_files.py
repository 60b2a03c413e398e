"""What the JSON files of a run directory and of an export folder must hold, checked when they are read.

run.json, metrics.json, predictions.json and peftqa.json are read by evaluate, predict, export, report
and the web page; a file that is valid JSON of the wrong shape (`null`, a list, `{}`, `"f1": "high"`)
is one PeftqaError naming the file and the field here, never a crash in whatever reads the field later.
Each check covers every field a command reads: the required ones must be there, the others may be
missing (older runs, hand-made ones) but must have the right type when they are there.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.settings.run_config import RunConfig, setting_types

Check = Callable[[Any], bool]


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: Any) -> bool:
    """A whole number, negative too (a seed)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_score(value: Any) -> bool:
    """An EM or F1 figure: a number from 0 to 100."""
    return is_number(value) and 0 <= value <= 100


def is_loss(value: Any) -> bool:
    """A loss: a number, or null (NaN or infinity of a run that diverged; older runs wrote NaN)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def is_interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)


def list_of(check: Check) -> Check:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def mapping_of(check: Check) -> Check:
    return lambda value: isinstance(value, dict) and all(check(item) for item in value.values())


def record(fields: Mapping[str, Check], maybe: Mapping[str, Check] = {}) -> Check:
    """An object holding every one of `fields` and perhaps some of `maybe`, each passing its check."""
    return lambda value: (
        isinstance(value, dict)
        and all(k in value and ok(value[k]) for k, ok in fields.items())
        and all(ok(value[k]) for k, ok in maybe.items() if k in value)
    )


def is_text(value: Any) -> bool:
    return isinstance(value, str)


_EVALUATION = {"step": is_count, "eval_loss": is_loss, "exact_match": is_score, "f1": is_score}
# metrics.json: field -> (its check, what it should be).
METRICS_REQUIRED: dict[str, tuple[Check, str]] = {
    "exact_match": (is_score, "a number from 0 to 100"),
    "f1": (is_score, "a number from 0 to 100"),
}
METRICS_OPTIONAL: dict[str, tuple[Check, str]] = {
    "method": (is_text, "a string"),
    "model": (is_text, "a string"),
    "seed": (is_whole, "a whole number"),
    "train_seconds": (is_number, "a number"),
    "train_features_per_second": (is_number, "a number"),
    "train_tokens_per_second": (is_number, "a number"),
    "eval_seconds": (is_number, "a number"),
    "eval_features_per_second": (is_number, "a number"),
    "tokenize_seconds": (is_number, "a number"),
    "peak_memory_mb": (is_number, "a number"),
    "exact_match_ci": (is_interval, "two numbers [low, high]"),
    "f1_ci": (is_interval, "two numbers [low, high]"),
    "eval_split": (is_text, "a string"),
    "eval_loss": (is_loss, "a number"),
    "eval_questions": (is_count, "a whole number"),
    "trainable_params": (is_count, "a whole number"),
    "total_params": (is_count, "a whole number"),
    "trainable_percent": (is_number, "a number"),
    "artifact_bytes": (is_count, "a whole number"),
    "steps": (is_count, "a whole number"),
    "null_threshold": (optional(is_number), "a number or null"),
    "best_f1": (is_number, "a number"),
    "history": (list_of(record({"epoch": is_count, "train_loss": is_loss, **_EVALUATION})), "a list of epochs"),
    "step_losses": (list_of(is_loss), "a list of numbers"),
    "validation": (optional(list_of(record(_EVALUATION))), "a list of evaluations"),
    "kept_step": (optional(is_count), "a step number"),
    "stopped_at_step": (optional(is_count), "a step number"),
    "best_step": (optional(is_count), "a step number"),
    "validation_description": (optional(is_text), "a string"),
}
# What the report's tables read of every run beyond the scores.
METRICS_FOR_REPORT: tuple[str, ...] = ("method", "model", "trainable_params", "trainable_percent")
METRICS_FOR_REPORT += ("train_seconds", "train_features_per_second")
_DATA_FILE = record({"fingerprint": is_text}, {"source": is_text, "format": is_text, "questions": is_count})
# run.json beside its config (checked against RunConfig's fields).
SETTINGS_REQUIRED: dict[str, tuple[Check, str]] = {
    "config": (lambda value: isinstance(value, dict), "an object of settings"),
    "base_model_path": (is_text, "a string"),
}
SETTINGS_OPTIONAL: dict[str, tuple[Check, str]] = {
    "learning_rate": (is_number, "a number"),
    "head_learning_rate": (is_number, "a number"),
    "method_details": (optional(lambda value: isinstance(value, dict)), "an object"),
    "data_files": (mapping_of(_DATA_FILE), "an object of {fingerprint, source, questions} per split"),
    "null_threshold_chosen_on": (is_text, "a string"),
    "validated_on": (is_text, "a string"),
    "train_questions": (is_count, "a whole number"),
    "train_features": (is_count, "a whole number"),
    "eval_questions": (is_count, "a whole number"),
    "eval_features": (is_count, "a whole number"),
    "eval_description": (is_text, "a string"),
    "versions": (mapping_of(is_text), "an object of package versions"),
    "git_commit": (optional(is_text), "a string"),
    "device": (is_text, "a string"),
    "started": (is_text, "a string"),
}
_EXPORT_REQUIRED: dict[str, tuple[Check, str]] = {
    "format": (lambda value: value in ("hf", "onnx"), "hf or onnx"),
    "config": (lambda value: isinstance(value, dict), "an object of settings"),
}
_EXPORT_OPTIONAL: dict[str, tuple[Check, str]] = {
    "data_files": (optional(SETTINGS_OPTIONAL["data_files"][0]), SETTINGS_OPTIONAL["data_files"][1]),
    "quantize": (optional(is_text), "a string"),
    "source_run": (is_text, "a string"),
    "metrics": (lambda value: isinstance(value, dict), "an object"),
    "int8": (
        optional(record({"int8": record({"exact_match": is_score, "f1": is_score})})),
        "an object with int8 exact_match and f1",
    ),
}


def check_fields(
    value: Any,
    where: object,
    required: Mapping[str, tuple[Check, str]],
    optional: Mapping[str, tuple[Check, str]] = {},
    what: str = "a JSON object",
) -> dict[str, Any]:
    """`value` when it is an object with every required field and the right type in every field it has;
    else a PeftqaError naming `where` and the first field that is wrong."""
    if not isinstance(value, dict):
        raise PeftqaError(f"{where}: not {what} (found {_kind(value)}: a damaged or hand-edited file?)")
    for name in required:
        if name not in value:
            raise PeftqaError(f"{where}: not {what} (the field '{name}' is missing: a damaged or hand-edited file?)")
    for name, (check, should) in {**required, **optional}.items():
        if name in value and not check(value[name]):
            raise PeftqaError(f"{where}: field '{name}' should be {should}, found {_shown(value[name])}")
    return value


def config_values(values: Any, where: object) -> dict[str, Any]:
    """run.json's config with every field of the type RunConfig declares, and RunConfig's defaults for
    those an older run.json lacks (RunConfig's range checks are not made: see check_config)."""
    if not isinstance(values, dict):
        raise PeftqaError(f"{where}: field 'config' should be an object of settings, found {_kind(values)}")
    hints = setting_types()  # every setting by the flat name run.json gives it, whatever its group
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            should = _hint_name(hints[name])
            raise PeftqaError(f"{where}: config field '{name}' should be {should}, found {_shown(value)}")
    return {**RunConfig().to_dict(), **values}


def check_config(values: Any, where: object) -> RunConfig:
    """run.json's (or peftqa.json's) config as a RunConfig: every field of the type RunConfig declares,
    then RunConfig's own checks; a PeftqaError naming `where` and the field else."""
    config_values(values, where)
    try:
        return RunConfig.from_dict(values)
    except PeftqaError as error:
        raise PeftqaError(f"{where}: config: {error}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        raise PeftqaError(f"{where}: config: {error}") from None


def read_settings(path: Path, config_checked: bool = True) -> dict[str, Any]:
    """run.json, checked: every field a command reads has its type, and (unless `config_checked` is
    False: --resume compares settings one by one, and needs nothing of run.json but them) its config
    builds a RunConfig."""
    required = SETTINGS_REQUIRED if config_checked else {"config": SETTINGS_REQUIRED["config"]}
    settings = check_fields(files.read_json(path), path, required, SETTINGS_OPTIONAL, "a peftqa run.json")
    if config_checked:
        check_config(settings["config"], path)
    return settings


def read_metrics(path: Path, needed: tuple[str, ...] = ()) -> dict[str, Any]:
    """metrics.json, checked (with the fields `needed` required too); its presence marks a finished run,
    so a missing one is an unfinished run."""
    if not path.is_file():
        raise PeftqaError(f"{path.parent}: no {path.name}: the run did not finish (or its files were removed)")
    required = {**METRICS_REQUIRED, **{name: METRICS_OPTIONAL[name] for name in needed}}
    return check_fields(files.read_json(path), path, required, METRICS_OPTIONAL, "a peftqa metrics.json")


def read_predictions(path: Path) -> dict[str, str]:
    """A predictions file, {question id: answer text}, checked."""
    value = files.read_json(path)
    if not isinstance(value, dict) or not all(isinstance(answer, str) for answer in value.values()):
        raise PeftqaError(f"{path}: expected a JSON object {{question id: answer text}}, found {_kind(value)}")
    return value


def check_export_info(info: Any, path: Path) -> dict[str, Any]:
    """peftqa.json of an export: its format, the run's config and the figures it carries, checked."""
    check_fields(info, path, _EXPORT_REQUIRED, _EXPORT_OPTIONAL, "a peftqa export description")
    check_config(info["config"], path)
    check_fields(info.get("metrics") or {}, f"{path}: metrics", {}, METRICS_OPTIONAL | METRICS_REQUIRED)
    return info


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type of a RunConfig field (int: not bool; float: any finite number)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list)
    return True  # a type JSON cannot hold: RunConfig's own checks decide


def _hint_name(hint: Any) -> str:
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_hint_name(option) for option in typing.get_args(hint))
    return names.get(hint, "an object" if typing.get_origin(hint) is dict else str(hint))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A found value, short and on one line."""
    text = files.to_json(files.finite(value))
    return text if len(text) <= 40 else f"{_kind(value)} ({text[:30]}...)"
