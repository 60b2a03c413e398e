"""README.md of an export, the model card: what was trained, on what, how, how well, and how to use
it. The text is in card.md (and card_use_hf.md / card_use_onnx.md for the format's own "Use"),
filled with string.Template; this module only works out the values."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any


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


def _use(info: dict[str, Any]) -> str:
    """The card's "Use" section: plain transformers code for hf, the graph's inputs and outputs for onnx."""
    scoring = info["scoring"]
    if info["format"] == "hf":
        return _template("card_use_hf.md").substitute(scoring).rstrip("\n")
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


def model_card(info: dict[str, Any], settings: dict[str, Any]) -> str:
    """README.md of the export, from its peftqa.json (`info`) and the run's run.json (`settings`)."""
    from peftqa.methods import get_method

    config = info["config"]
    metrics = info["metrics"]
    method = get_method(config["method"])
    options = ", ".join(f"{k}={v}" for k, v in sorted((config.get("method_options") or {}).items())) or "defaults"
    train_sample = config.get("train_limit")
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
    if settings.get("git_commit"):
        versions += f"; peftqa commit {settings['git_commit'][:12]}"
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
        train_data=f"a seeded random sample of {train_sample:,} questions" if train_sample else "all 87,599 questions",
        epochs=config.get("epochs"),
        lr=config.get("lr") or method.default_lr,
        batch_size=config.get("batch_size"),
        dropout=config.get("dropout"),
        seed=config.get("seed"),
        exact_match=_with_interval(metrics, "exact_match"),
        f1=_with_interval(metrics, "f1"),
        questions=metrics.get("eval_questions") or "?",
        eval_split=config.get("eval_split", "dev"),
        eval_sample=config.get("eval_sample", ""),
        eval_seed=config.get("eval_seed", ""),
        trainable=_trainable(metrics),
        use=_use(info),
        versions=versions,
    )
