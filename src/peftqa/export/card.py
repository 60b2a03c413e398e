"""README.md of an export, the model card: what was trained, on what, how, how well, and how to use
it. The text is in card.md (and card_use_hf.md / card_use_onnx.md for the format's own "Use"),
filled with string.Template; this module only works out the values.

Every claim comes from what the run recorded (run.json: its data files, questions, steps, versions;
metrics.json: its scores and steps), never from what a run usually is: a run on 25 questions of the
user's own file for 8 steps says so, and the SQuAD dataset tag and attribution appear only when the
official SQuAD files were used.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from peftqa.data import is_official

SQUAD_TAG = "datasets:\n- rajpurkar/squad\n"
SQUAD_ATTRIBUTION = "SQuAD v1.1: Rajpurkar et al., 2016, CC BY-SA 4.0. "


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def _number(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_interval(metrics: dict[str, Any], key: str) -> str:
    interval = metrics.get(f"{key}_ci")
    text = _number(metrics.get(key))
    if isinstance(interval, list | tuple) and len(interval) == 2:
        text += f" (95% CI {interval[0]:.2f}–{interval[1]:.2f})"
    return text


def _base_model(base: str) -> str:
    from peftqa.model.backbone import ALIASES

    if base in ALIASES:
        return f"`{base}` ({ALIASES[base].description})"
    if Path(base).is_absolute() or os.sep in base:  # a local folder: its name, not this machine's paths
        return f"`{Path(base).name}` (a local folder)"
    return f"`{base}`"


def _trainable(metrics: dict[str, Any]) -> str:
    trainable, total = metrics.get("trainable_params"), metrics.get("total_params")
    if isinstance(trainable, int) and isinstance(total, int):
        return f"{trainable:,} of {total:,}"
    return "–"


def _data_file(settings: dict[str, Any], split: str) -> dict[str, Any] | None:
    return (settings.get("data_files") or {}).get(split)


def _official(settings: dict[str, Any], split: str) -> bool:
    """Whether the run's `split` questions came from the official SQuAD v1.1 file (by fingerprint)."""
    recorded = _data_file(settings, split)
    if recorded is not None:
        return is_official(recorded["fingerprint"])
    md5 = (settings.get("data_md5") or {}).get(split)  # runs before data_files were recorded
    return isinstance(md5, str) and is_official(md5)


def _source_name(settings: dict[str, Any], split: str) -> str:
    """'SQuAD v1.1 train', or the user's file by name and format (never this machine's path)."""
    if _official(settings, split):
        return f"SQuAD v1.1 {split}"
    recorded = _data_file(settings, split)
    if recorded is None:
        return f"{split} questions (their file is not recorded)"
    kind = {"squad": "SQuAD JSON", "jsonl": "JSON Lines", "datasets": "a `datasets` dataset"}
    name = Path(recorded.get("source") or "?").name
    return f"`{name}` ({kind.get(recorded.get('format', ''), 'questions')})"


def _train_data(settings: dict[str, Any], config: dict[str, Any]) -> str:
    """Which training questions, how many of the file's, and how they were chosen."""
    used = settings.get("train_questions")
    recorded = _data_file(settings, "train")
    text = _source_name(settings, "train")
    if used is None:
        return text
    available = recorded.get("questions") if recorded else None
    if available is not None and used < available:
        # Fewer than the file's: a seeded sample (train_limit), and/or held-out articles kept out of training.
        how = f"a seeded random sample, seed {config.get('seed')}" if config.get("train_limit") else "some held out"
        return f"{text}: {used:,} of its {available:,} questions ({how})"
    return f"{text}: {used:,} questions"


def _training(settings: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any]) -> str:
    """'8 optimiser steps (0.33 epochs of 24 windows)', from the steps the run took."""
    steps, windows, batch = metrics.get("steps"), settings.get("train_features"), config.get("batch_size")
    if steps is None:
        return f"{config.get('epochs')} epoch(s) asked for (the steps taken are not recorded)"
    text = f"{steps:,} optimiser steps"
    if windows and batch:
        epochs = steps / math.ceil(windows / batch)
        text += f" ({epochs:.3g} epoch(s) of {windows:,} training windows)"
    return text


def _scored_on(settings: dict[str, Any], config: dict[str, Any]) -> str:
    split = "train" if config.get("eval_split") == "validation" else "dev"
    described = settings.get("eval_description") or "questions (not recorded)"
    return f"{_source_name(settings, split)}: {described}"


def _trained_with(settings: dict[str, Any]) -> str:
    versions = settings.get("versions") or {}
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v != "not installed")
    if settings.get("git_commit"):
        shown += f"; peftqa commit {settings['git_commit'][:12]}"
    return shown or "package versions not recorded"


def _pipeline_note(versions: dict[str, str]) -> str:
    """Whether the transformers this export used still has the question-answering pipeline (5.x dropped it)."""
    from transformers.pipelines import SUPPORTED_TASKS

    has = "question-answering" in SUPPORTED_TASKS
    return f"transformers {versions.get('transformers', '?')}, used for this export, " + (
        "has that pipeline" if has else "has dropped that pipeline"
    )


def _use(info: dict[str, Any]) -> str:
    """The card's "Use" section: plain transformers code for hf, the graph's inputs and outputs for onnx."""
    scoring = info["scoring"]
    if info["format"] == "hf":
        values = {**scoring, "pipeline": _pipeline_note(info["versions"])}
        return _template("card_use_hf.md").substitute(values).rstrip("\n")
    int8 = ""
    if info.get("int8"):
        report = info["int8"]
        int8 = (
            "\n\n"
            f"Dynamic int8 quantisation, scored on the same {report['fp32']['eval_questions']} dev questions: "
            f"EM/F1 {report['fp32']['exact_match']:.2f}/{report['fp32']['f1']:.2f} in fp32, "
            f"{report['int8']['exact_match']:.2f}/{report['int8']['f1']:.2f} in int8 "
            f"({report['same_answers']} identical answers)."
        )
    return _template("card_use_onnx.md").substitute(int8=int8).rstrip("\n")


def _rates(settings: dict[str, Any], config: dict[str, Any], default_lr: float) -> str:
    """'0.003, QA head lr 0.01': the method's rate and, when it trained at another, the fresh QA head's
    (run.json's head_learning_rate; a run made before the head had its own rate records none)."""
    lr = settings.get("learning_rate") or config.get("lr") or default_lr
    head = settings.get("head_learning_rate")
    return f"{lr:g}" + (f", QA head lr {head:g}" if isinstance(head, (int, float)) and head != lr else "")


def model_card(info: dict[str, Any], settings: dict[str, Any]) -> str:
    """README.md of the export, from its peftqa.json (`info`) and the run's run.json (`settings`)."""
    from peftqa.methods import get_method

    config = info["config"]
    metrics = info["metrics"]
    method = get_method(config["method"])
    options = ", ".join(f"{k}={v}" for k, v in sorted((config.get("method_options") or {}).items())) or "defaults"
    official = _official(settings, "train") or _official(settings, "dev")
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
    onnx_format = "ONNX" + (" (dynamic int8)" if info.get("quantize") else "")
    return _template("card.md").substitute(
        info["scoring"],
        library="transformers" if info["format"] == "hf" else "onnx",
        method=config["method"],
        source_run=info["source_run"],
        description=method.description,
        weights_format=onnx_format if info["format"] == "onnx" else "safetensors",
        merged=" with the adapter merged into the base weights." if method.shares_base else ".",
        options=options,
        base_model=_base_model(config["model"]),
        datasets=SQUAD_TAG if official else "",
        data_name="SQuAD v1.1" if _official(settings, "train") else _source_name(settings, "train"),
        train_data=_train_data(settings, config),
        training=_training(settings, metrics, config),
        lr=_rates(settings, config, method.default_lr),
        batch_size=config.get("batch_size"),
        dropout=config.get("dropout"),
        seed=config.get("seed"),
        exact_match=_with_interval(metrics, "exact_match"),
        f1=_with_interval(metrics, "f1"),
        scored="held-out" if config.get("eval_split") == "validation" else "dev",
        scored_on=_scored_on(settings, config),
        trainable=_trainable(metrics),
        use=_use(info),
        attribution=SQUAD_ATTRIBUTION if official else "",
        trained_with=_trained_with(settings),
        versions=versions,
    )
