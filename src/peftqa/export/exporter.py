"""Ship a trained run: a merged Hugging Face model folder, or ONNX (fp32, or int8 with dynamic quantisation).

    peftqa export RUN_DIR --out DIR [--format hf|onnx] [--quantize int8] [--force]

    DIR/ (hf)                        DIR/ (onnx)
      config.json                      model.onnx          fp32, or int8 with --quantize int8
      model.safetensors                config.json
      tokenizer files                  tokenizer files
      README.md    model card          README.md           model card
      peftqa.json  source run, scoring settings, the run's dev figures and verification
      run_predictions.json  the run's own answers, so `peftqa evaluate DIR` can count identical ones

An hf folder loads with plain transformers (`AutoModelForQuestionAnswering.from_pretrained(DIR)`).
transformers 5 has no `pipeline("question-answering")`: the model card shows the few lines that
replace it (and says whether the transformers used for the export still has it). peftqa reads
peftqa.json (run_folder.load_run) only to score the folder on the run's own questions with the run's own
windows. Every export is checked before it is written: the merged weights, the saved folder and the
ONNX graph must give the run's logits on real windows. Methods whose modules cannot merge
(MethodSpec.merges False: bottleneck adapters) export as ONNX only, their adapted model traced as it is.

The jobs live in verify (merging, probe windows, logit checks), onnx (tracing, int8), folder (the
output folder) and card (the model card); this module runs them in order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.export.card import model_card
from peftqa.export.folder import check_out, folder_bytes, publish, staging_folder
from peftqa.export.onnx import quantize_and_score, write_checked_onnx
from peftqa.export.verify import MERGE_ATOL, checked_difference, logits, merge_model, probe_batch
from peftqa.inference import run_files, run_folder
from peftqa.inference.run_data import locate_questions
from peftqa.methods import MethodSpec, get_method
from peftqa.model.onnx_runtime import require_onnx

FORMATS = run_folder.EXPORT_FORMATS
QUANTIZATIONS = ("int8",)
# What peftqa.json carries of the run's metrics.json: the figures the card and the web page show.
_CARRIED_METRICS = (
    "exact_match",
    "f1",
    "exact_match_ci",
    "f1_ci",
    "eval_questions",
    "trainable_params",
    "total_params",
    "trainable_percent",
    "null_threshold",  # SQuAD 2.0 data: the export answers "no answer" by the run's own threshold
    "steps",  # the model card says how long the run trained
)


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str = "hf",
    quantize: str | None = None,
    force: bool = False,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export a finished run to `out` and return what peftqa.json records (plus the folder's size).

    Args:
        run_dir: a run directory written by `peftqa train`.
        out: the folder to write; it must not exist (or be empty) unless `force`, which replaces an
            earlier export only.
        fmt: "hf" (merged safetensors folder) or "onnx".
        quantize: None, or "int8" (onnx only): dynamic int8 quantisation, scored on the run's dev
            sample before and after (needs the SQuAD dev file).
        data_dir: where SQuAD is for the int8 scoring (default: the run's own setting).
        log: gets one line per step.

    Raises:
        PeftqaError: unknown format, a broken run directory, an --out that cannot be written or
            already exists, a missing onnx extra, or logits that do not match after export.
    """
    _check_request(fmt, quantize)
    run_dir, out = Path(run_dir), Path(out)
    _, run_settings = run_folder.check_run_dir(run_dir)  # a broken run is named before any refusal of --out
    # A method that cannot merge is told from run.json alone, whatever else the folder lacks.
    spec = get_method(run_settings["config"]["method"])
    check_format_fits(spec, fmt)
    # metrics.json marks a finished run: an export carries its figures, and its answers to compare with.
    run_files.read_metrics(run_dir / run_folder.METRICS_JSON)
    run_files.read_predictions(run_dir / run_folder.PREDICTIONS_JSON)
    check_out(out, run_dir, force)
    with staging_folder(out) as staging:  # an unwritable --out fails here, before any model loads
        loaded = run_folder.load_run(run_dir)
        config = loaded.config
        if quantize:  # fail on missing data now, not after the export
            from peftqa.data import eval_questions

            config = locate_questions(config, loaded.settings, data_dir)
            eval_questions(config.data.data_dir, config.questions)
        batch = probe_batch(loaded.tokenizer, config.scoring)
        reference = logits(loaded.model, batch)
        verification: dict[str, Any] = {"probe_windows": int(batch["input_ids"].shape[0])}
        model = loaded.model  # traced as it is when the method cannot merge (ONNX only, checked above)
        if spec.merges:
            model = merge_model(loaded.model)
            verification["merged_max_abs_logit_diff"] = checked_difference(
                model, reference, batch, MERGE_ATOL, "the merged model's logits differ from the run's"
            )
        extra: dict[str, Any] = {}
        if fmt == "hf":
            verification.update(_write_hf(model, reference, batch, staging))
        else:
            model.config.save_pretrained(staging)
            verification.update(write_checked_onnx(model, batch, staging))
            if quantize:
                extra["int8"] = quantize_and_score(staging, loaded.tokenizer, config, None, log, loaded.null_threshold)
        loaded.tokenizer.save_pretrained(staging)
        info = _export_info(fmt, quantize, run_dir, loaded, verification, extra)
        _write_description(staging, run_dir, info, loaded.settings)
        size = folder_bytes(staging)
        publish(staging, out)
    log(f"exported {run_dir.name} ({config.method}) as {fmt}{' int8' if quantize else ''} to {out}: {size:,} bytes")
    return {**info, "bytes": size, "out": str(out)}


def check_format_fits(spec: MethodSpec, fmt: str) -> None:
    """Refuse an hf export of a method whose modules cannot be merged into the base weights: a plain
    transformers folder has nowhere to put them, while ONNX traces the adapted model as it is."""
    if fmt == "hf" and not spec.merges:
        raise PeftqaError(
            f"{spec.name} adapters cannot be merged into the base weights; export with --format onnx (a traced graph)"
        )


def _check_request(fmt: str, quantize: str | None) -> None:
    """Refuse an unknown format or quantisation before anything is read."""
    if fmt not in FORMATS:
        raise PeftqaError(f"unknown format '{fmt}'; known formats: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PeftqaError(f"unknown quantisation '{quantize}'; known: {', '.join(QUANTIZATIONS)}")
    if quantize is not None and fmt != "onnx":
        raise PeftqaError("--quantize int8 applies to --format onnx only")
    if fmt == "onnx":
        require_onnx()


def _write_hf(model: Any, reference: tuple[Any, ...], batch: dict[str, Any], staging: Path) -> dict[str, float]:
    """Save the merged model as safetensors and check that the folder, loaded again, gives the run's logits."""
    model.save_pretrained(staging)
    saved = checked_difference(
        run_folder.load_saved_model(staging),
        reference,
        batch,
        MERGE_ATOL,
        "the saved folder's logits differ from the run's",
    )
    return {"saved_max_abs_logit_diff": saved}


def _export_info(
    fmt: str,
    quantize: str | None,
    run_dir: Path,
    loaded: run_folder.LoadedRun,
    verification: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """peftqa.json: where the export comes from, how it scores, and what its checks found."""
    config, metrics, settings = loaded.config, loaded.metrics, loaded.settings
    scoring = asdict(config.scoring)
    return {
        "format": fmt,
        "quantize": quantize,
        "source_run": run_dir.name,
        "method": config.method,
        "base_model": config.model,
        "scoring": {name: scoring[name] for name in ("max_length", "doc_stride", "n_best", "max_answer_tokens")},
        "metrics": {key: metrics[key] for key in _CARRIED_METRICS if key in metrics},
        "config": settings["config"],
        "data_files": settings.get("data_files"),  # where `peftqa evaluate` of the export finds the questions
        "verification": verification,
        **extra,
        "versions": run_folder.package_versions(),
        "git_commit": settings.get("git_commit"),
    }


def _write_description(staging: Path, run_dir: Path, info: dict[str, Any], settings: dict[str, Any]) -> None:
    """peftqa.json, the run's own answers and the model card, beside the weights."""
    files.write_json_atomic(staging / run_folder.EXPORT_JSON, info)
    shutil.copyfile(run_dir / run_folder.PREDICTIONS_JSON, staging / run_folder.RUN_PREDICTIONS_JSON)
    (staging / run_folder.MODEL_CARD).write_text(model_card(info, settings), encoding="utf-8")
