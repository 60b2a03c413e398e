"""The merged model as ONNX: traced with dynamic axes, checked against PyTorch in ONNX Runtime, and
optionally quantised to int8 and scored before and after on the run's dev sample."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftqa.export.verify import accepted_inputs, checked_difference, logits
from peftqa.inference.run_folder import ONNX_FILE
from peftqa.model.onnx_runtime import OnnxQAModel

if TYPE_CHECKING:
    import torch

# Opset 17 has LayerNormalization as one op (smaller, faster graphs) and every onnxruntime release
# on PyPI since 1.14 runs it.
ONNX_OPSET = 17
# Largest start/end logit difference accepted between ONNX Runtime and PyTorch.
ONNX_ATOL = 1e-4


def write_checked_onnx(model: Any, batch: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Trace the model (merged, or adapted as it is where its method cannot merge) to folder/model.onnx
    and check ONNX Runtime's logits against PyTorch's; returns what the check found, for peftqa.json."""
    path = folder / ONNX_FILE
    export_onnx(model, batch, path)
    onnx_model = OnnxQAModel(path)
    difference = checked_difference(
        onnx_model, logits(model, batch), batch, ONNX_ATOL, "ONNX Runtime's logits differ from PyTorch's"
    )
    return {"onnx_max_abs_logit_diff": difference, "onnx_opset": ONNX_OPSET}


def _logits_only(model: Any, names: list[str]) -> torch.nn.Module:
    """The model as tracing wants it: positional tensors in, (start, end) logits out."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            output = self.model(**dict(zip(names, tensors, strict=True)))
            return output.start_logits, output.end_logits

    return LogitsOnly().eval()


def export_onnx(model: Any, batch: dict[str, Any], path: Path) -> None:
    """Trace the model to ONNX with dynamic batch and sequence axes (the TorchScript exporter: it needs
    no onnxscript and traces transformers' encoders to plain ONNX ops)."""
    import torch

    inputs = accepted_inputs(model, batch)
    names = list(inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "start_logits", "end_logits"]}
    with warnings.catch_warnings():
        # Tracer notes about Python booleans in transformers' mask code: the check after it is what counts.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _logits_only(model, names),
            tuple(inputs.values()),
            str(path),
            input_names=names,
            output_names=["start_logits", "end_logits"],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    model.eval()  # the exporter puts the traced modules back in their former (training) mode


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation (int8 weights per output channel, activations quantised as they come)
    with ONNX Runtime's tool."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs "please consider pre-processing" on the root logger: shape inference adds nothing here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # One scale per output channel: one scale per tensor loses far more F1
        # (docs/results/2026-11-27-serving.md).
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def quantize_and_score(
    staging: Path,
    tokenizer: Any,
    config: Any,
    data_dir: str | None,
    log: Callable[[str], None],
    null_threshold: float | None = None,
) -> dict[str, Any]:
    """Quantise model.onnx in place and score it before and after on the run's dev sample (a SQuAD 2.0
    run answering "no answer" by its own `null_threshold`)."""
    fp32 = staging / ONNX_FILE
    int8 = staging / f"int8-{ONNX_FILE}"
    log("scoring the fp32 ONNX model on the run's dev sample")
    before = _score_on_dev(OnnxQAModel(fp32), tokenizer, config, data_dir, null_threshold)
    quantize_int8(fp32, int8)
    log("scoring the int8 ONNX model on the run's dev sample")
    after = _score_on_dev(OnnxQAModel(int8), tokenizer, config, data_dir, null_threshold)
    same = sum(after["predictions"][q] == answer for q, answer in before["predictions"].items())
    fp32_bytes = fp32.stat().st_size
    os.replace(int8, fp32)
    report = {
        "fp32": {k: v for k, v in before.items() if k != "predictions"},
        "int8": {k: v for k, v in after.items() if k != "predictions"},
        "same_answers": same,
        "fp32_onnx_bytes": fp32_bytes,
        "int8_onnx_bytes": fp32.stat().st_size,
    }
    log(
        f"dev EM/F1 on {before['eval_questions']} questions: fp32 {before['exact_match']:.2f}/{before['f1']:.2f}, "
        f"int8 {after['exact_match']:.2f}/{after['f1']:.2f} ({same} identical answers)"
    )
    return report


def _score_on_dev(
    model: Any, tokenizer: Any, config: Any, data_dir: str | None, null_threshold: float | None
) -> dict[str, Any]:
    """EM/F1 (with intervals) of `model` on the run's own dev sample, with the run's windows."""
    from peftqa.inference.evaluate import NullRule, evaluate, run_questions

    examples, features = run_questions(config, tokenizer, data_dir)
    null = NullRule(null_threshold) if null_threshold is not None else None
    result = evaluate(model, examples, features, tokenizer.pad_token_id, config.scoring, null)
    keys = ("exact_match", "f1", "exact_match_ci", "f1_ci")
    return {
        **{key: result.metrics[key] for key in keys},
        "eval_questions": len(examples),
        "predictions": result.predictions,
    }
