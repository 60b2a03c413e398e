"""Ship a trained run: a merged Hugging Face model folder, or ONNX (fp32, or int8 with dynamic quantisation).

    peftqa export RUN_DIR --out DIR [--format hf|onnx] [--quantize int8] [--force]

    DIR/ (hf)                        DIR/ (onnx)
      config.json                      model.onnx          fp32, or int8 with --quantize int8
      model.safetensors                config.json
      tokenizer files                  tokenizer files
      README.md    model card          README.md           model card
      peftqa.json  source run, scoring settings, the run's dev figures and verification
      run_predictions.json  the run's own answers, so `peftqa evaluate DIR` can count identical ones

An hf folder loads with plain transformers (`AutoModelForQuestionAnswering.from_pretrained(DIR)`,
`pipeline("question-answering", model=DIR)`); peftqa reads peftqa.json only to score the folder on
the run's own questions with the run's own windows. Every export is checked before it is written:
the merged weights, the saved folder and the ONNX graph must give the run's logits on real windows.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from peftqa import files, runs
from peftqa.errors import PeftqaError

if TYPE_CHECKING:
    import torch

FORMATS = ("hf", "onnx")
QUANTIZATIONS = ("int8",)
EXPORT_JSON = "peftqa.json"
RUN_PREDICTIONS_JSON = "run_predictions.json"
MODEL_CARD = "README.md"
ONNX_FILE = "model.onnx"
# Opset 17 has LayerNormalization as one op (smaller, faster graphs) and every onnxruntime release
# on PyPI since 1.14 runs it.
ONNX_OPSET = 17
# Largest start/end logit difference accepted: merged or saved weights against the run (float
# rounding of W + BA against Wx + BAx), and ONNX Runtime against PyTorch.
MERGE_ATOL = 1e-4
ONNX_ATOL = 1e-4
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_ONNX_EXTRA = "pip install 'peftqa[onnx]'"


def require_onnx() -> None:
    """onnx and onnxruntime are an optional extra: say which one to install when they are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise PeftqaError(f"ONNX needs onnx and onnxruntime ({error.name} is not installed): {_ONNX_EXTRA}") from None


# --------------------------------------------------------------------------------- merging


def merge_model(model: Any) -> Any:
    """The model with its adapter folded into the weights: a plain transformers model, no peft layers.

    full and bitfit runs are plain already. peft's merge writes into the base weights it wraps, so the
    model must own them (not the web page's shared base).
    """
    if hasattr(model, "merge_and_unload"):
        try:
            model = model.merge_and_unload()
        except (ValueError, NotImplementedError, RuntimeError, AttributeError) as error:
            raise PeftqaError(f"this adapter cannot be merged into its base weights ({error})") from error
    left = [name for name, _ in model.named_modules() if "base_layer" in name or "lora_" in name or "ia3_" in name]
    if left:
        raise PeftqaError(f"merging left adapter layers behind ({left[0]}): this method cannot be exported")
    return model.eval()


def probe_batch(tokenizer: Any, scoring: Any, rows: int = 8) -> dict[str, Any]:
    """Real windows to compare logits on: the shipped SQuAD dev examples cut with the run's windows,
    `rows` of them of different lengths in one padded batch (padding is where exports go wrong)."""
    import torch

    from peftqa.batches import collate
    from peftqa.data import Example, load_examples
    from peftqa.features import build_features

    examples = [Example(item["id"], item["question"], item["context"], (), ()) for item in load_examples()["examples"]]
    features = build_features(examples, tokenizer, scoring.max_length, scoring.doc_stride)
    # Longest and shortest windows of every example, up to `rows`.
    order = np.argsort(-features.lengths, kind="stable")
    chosen = sorted({int(order[0]), int(order[-1]), *map(int, order[:: max(1, len(order) // rows)])})[:rows]
    batch = collate(features, chosen, tokenizer.pad_token_id, torch.device("cpu"))
    return {name: batch[name] for name in _INPUT_NAMES if name in batch}


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The inputs of `batch` that the model's forward takes (DistilBERT has no token_type_ids)."""
    if isinstance(model, OnnxQAModel):
        accepted = model.input_names
    else:
        # A peft wrapper's forward takes **kwargs: ask the transformers model inside it.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        accepted = list(inspect.signature(inner.forward).parameters)
    return {name: value for name, value in batch.items() if name in accepted}


def logits(model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of a PyTorch (or ONNX-wrapped) model on a batch, as float32 arrays."""
    import torch

    with torch.inference_mode():
        output = model(**model_inputs(model, batch))
    return output.start_logits.float().numpy(), output.end_logits.float().numpy()


def largest_difference(first: tuple[np.ndarray, ...], second: tuple[np.ndarray, ...], mask: np.ndarray) -> float:
    """The largest absolute start/end logit difference over real (unpadded) tokens."""
    real = mask.astype(bool)
    return max(float(np.abs(a - b)[real].max()) for a, b in zip(first, second, strict=True))


# --------------------------------------------------------------------------------- ONNX


class OnnxQAModel:
    """An ONNX Runtime session that answers like a transformers QA model: `model(**batch)` returns
    start_logits and end_logits as CPU tensors, so predict_logits, evaluate and the web page use it
    unchanged. `parameters()` yields one empty CPU tensor: that is how they find the device."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime
        import torch

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise PeftqaError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from error
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.path = Path(path)
        self._anchor = torch.zeros(0)

    def parameters(self):
        yield self._anchor

    def eval(self) -> OnnxQAModel:
        return self

    def to(self, device: Any) -> OnnxQAModel:
        return self  # the CPU execution provider only

    def __call__(self, **batch: Any) -> SimpleNamespace:
        return self.forward(**batch)

    def forward(self, **batch: Any) -> SimpleNamespace:
        import torch

        feed = {name: batch[name].cpu().numpy() for name in self.input_names}
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return SimpleNamespace(start_logits=torch.from_numpy(start), end_logits=torch.from_numpy(end))


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

    inputs = model_inputs(model, batch)
    names = list(inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "start_logits", "end_logits"]}
    with warnings.catch_warnings():
        # Tracer notes about Python booleans in transformers' mask code: the check below is what counts.
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
        # One scale per output channel: on the quick study's LoRA run (MiniLM-L6, 500 dev questions) F1
        # fell 0.35 per channel against 4.2 with one scale per tensor (410 against 312 answers unchanged).
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


# --------------------------------------------------------------------------------- reading exports


def is_export(folder: str | os.PathLike) -> bool:
    return (Path(folder) / EXPORT_JSON).is_file() and not (Path(folder) / runs.RUN_JSON).is_file()


def read_export_info(folder: str | os.PathLike) -> dict[str, Any]:
    """peftqa.json of an exported folder, checked for what evaluation and serving need."""
    path = Path(folder) / EXPORT_JSON
    info = files.read_json(path)
    if not isinstance(info, dict) or info.get("format") not in FORMATS or not isinstance(info.get("config"), dict):
        raise PeftqaError(f"{path}: not a peftqa export description (no 'format' or 'config')")
    return info


def load_exported(folder: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> runs.LoadedRun:
    """An exported folder as a LoadedRun: run.json's settings and metrics.json's figures come from peftqa.json.

    Args:
        folder: written by `peftqa export`.
        device: for hf folders (ONNX runs on the CPU).
        threads: ONNX Runtime intra-op threads (None: its default, every core).
    """
    from peftqa.backbone import load_tokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PeftqaError(f"{folder}: no such folder")
    info = read_export_info(folder)
    if info["format"] == "onnx":
        require_onnx()
        model: Any = OnnxQAModel(folder / ONNX_FILE, threads=threads)
    else:
        model = _load_hf(folder).to(device)
    settings = {"config": info["config"], "export": info}
    metrics = dict(info.get("metrics") or {})
    if info.get("int8"):  # the page shows the figures of the model it serves: int8's own
        int8 = info["int8"]["int8"]
        metrics.update({key: int8[key] for key in ("exact_match", "f1", "exact_match_ci", "f1_ci") if key in int8})
    return runs.LoadedRun(folder, settings, metrics, model, load_tokenizer(str(folder)))


def _load_hf(folder: Path) -> Any:
    """A saved transformers QA model in fp32, loaded quietly (backbone.load_qa_model)."""
    from peftqa.backbone import load_qa_model

    return load_qa_model(str(folder)).eval()


def load_for_scoring(path: str | os.PathLike, device: str = "cpu") -> runs.LoadedRun:
    """A run directory or an exported folder, ready to score (what `peftqa evaluate` accepts)."""
    return load_exported(path, device) if is_export(path) else runs.load_run(path, device=device)


def agreement_with_run(loaded: runs.LoadedRun, predictions: dict[str, str]) -> dict[str, Any]:
    """For an exported folder: on how many questions its answers are the run's own (run_predictions.json)."""
    if "export" not in loaded.settings:
        return {}
    path = loaded.run_dir / RUN_PREDICTIONS_JSON
    if not path.is_file():
        return {}
    original = files.read_json(path)
    shared = [question for question in predictions if question in original]
    same = sum(predictions[question] == original[question] for question in shared)
    return {"same_answers_as_run": same, "compared_with_run": len(shared)}


# --------------------------------------------------------------------------------- writing


def _check_out(out: Path, run_dir: Path, force: bool) -> None:
    """Refuse an --out that exists (without --force), that is not an export, or that holds the run."""
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents or run in resolved.parents:
        raise PeftqaError(f"--out {out} overlaps the run directory {run_dir}; choose another folder")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise PeftqaError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not force:
        raise PeftqaError(f"--out {out} exists; pass --force to replace it")
    if not (out / EXPORT_JSON).is_file():
        # --force replaces an earlier export, never an arbitrary folder such as '.' or a home directory.
        raise PeftqaError(f"--out {out} is not a peftqa export (no {EXPORT_JSON}); --force only replaces exports")


def _staging_folder(out: Path) -> Path:
    """A fresh folder beside --out to write into; renamed to --out once everything is checked."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise PeftqaError(f"cannot write to --out {out}: {error.strerror or error}") from error


def _publish(staging: Path, out: Path) -> None:
    """Put the finished export in place; an export it replaces is removed only after the rename."""
    # mkdtemp and safetensors create owner-only files: give the export the modes of anything else written here.
    umask = os.umask(0)
    os.umask(umask)
    for path in [staging, *staging.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _scoring_dict(scoring: Any) -> dict[str, int]:
    values = asdict(scoring)
    return {name: values[name] for name in ("max_length", "doc_stride", "n_best", "max_answer_tokens")}


def _score_on_dev(model: Any, tokenizer: Any, config: Any, data_dir: str | None) -> dict[str, Any]:
    """EM/F1 (with intervals) of `model` on the run's own dev sample, with the run's windows."""
    from peftqa.predict import evaluate, run_questions

    examples, features = run_questions(config, tokenizer, data_dir)
    result = evaluate(model, examples, features, tokenizer.pad_token_id, config.scoring)
    keys = ("exact_match", "f1", "exact_match_ci", "f1_ci")
    return {**{key: result.metrics[key] for key in keys}, "questions": len(examples), "predictions": result.predictions}


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
    if fmt not in FORMATS:
        raise PeftqaError(f"unknown format '{fmt}'; known formats: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PeftqaError(f"unknown quantisation '{quantize}'; known: {', '.join(QUANTIZATIONS)}")
    if quantize is not None and fmt != "onnx":
        raise PeftqaError("--quantize int8 applies to --format onnx only")
    if fmt == "onnx":
        require_onnx()
    run_dir, out = Path(run_dir), Path(out)
    _, settings = runs.check_run_dir(run_dir)
    _check_out(out, run_dir, force)
    staging = _staging_folder(out)  # an unwritable --out fails here, before any model loads
    try:
        loaded = runs.load_run(run_dir)
        config = loaded.config
        if quantize:  # fail on missing data now, not after the export
            from peftqa.data import eval_questions

            eval_questions(data_dir or config.data_dir, config.questions)
        batch = probe_batch(loaded.tokenizer, config.scoring)
        reference = logits(loaded.model, batch)
        model = merge_model(loaded.model)
        merged_difference = largest_difference(logits(model, batch), reference, batch["attention_mask"].numpy())
        if merged_difference > MERGE_ATOL:
            raise PeftqaError(
                f"the merged model's logits differ from the run's by {merged_difference:.2e} (> {MERGE_ATOL})"
            )
        verification: dict[str, Any] = {"probe_windows": int(batch["input_ids"].shape[0])}
        verification["merged_max_abs_logit_diff"] = merged_difference
        extra: dict[str, Any] = {}
        if fmt == "hf":
            model.save_pretrained(staging)
            saved = largest_difference(logits(_load_hf(staging), batch), reference, batch["attention_mask"].numpy())
            if saved > MERGE_ATOL:
                raise PeftqaError(f"the saved folder's logits differ from the run's by {saved:.2e} (> {MERGE_ATOL})")
            verification["saved_max_abs_logit_diff"] = saved
        else:
            model.config.save_pretrained(staging)
            export_onnx(model, batch, staging / ONNX_FILE)
            onnx_difference = largest_difference(
                logits(OnnxQAModel(staging / ONNX_FILE), batch), logits(model, batch), batch["attention_mask"].numpy()
            )
            if onnx_difference > ONNX_ATOL:
                raise PeftqaError(
                    f"ONNX Runtime's logits differ from PyTorch's by {onnx_difference:.2e} (> {ONNX_ATOL})"
                )
            verification["onnx_max_abs_logit_diff"] = onnx_difference
            verification["onnx_opset"] = ONNX_OPSET
            if quantize:
                extra["int8"] = _quantize_and_score(staging, loaded.tokenizer, config, data_dir, log)
        loaded.tokenizer.save_pretrained(staging)
        metrics = loaded.metrics
        info = {
            "format": fmt,
            "quantize": quantize,
            "source_run": run_dir.name,
            "method": config.method,
            "base_model": config.model,
            "scoring": _scoring_dict(config.scoring),
            "metrics": {key: metrics[key] for key in _CARRIED_METRICS if key in metrics},
            "config": settings["config"],
            "verification": verification,
            **extra,
            "versions": runs.package_versions(),
            "git_commit": settings.get("git_commit"),
        }
        files.write_json_atomic(staging / EXPORT_JSON, info)
        predictions = run_dir / runs.PREDICTIONS_JSON
        if predictions.is_file():
            shutil.copyfile(predictions, staging / RUN_PREDICTIONS_JSON)
        (staging / MODEL_CARD).write_text(model_card(info, settings), encoding="utf-8")
        size = folder_bytes(staging)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"exported {run_dir.name} ({config.method}) as {fmt}{' int8' if quantize else ''} to {out}: {size:,} bytes")
    return {**info, "bytes": size, "out": str(out)}


_CARRIED_METRICS = (
    "exact_match",
    "f1",
    "exact_match_ci",
    "f1_ci",
    "dev_questions",
    "questions",
    "trainable_params",
    "total_params",
    "trainable_percent",
)


def _quantize_and_score(
    staging: Path, tokenizer: Any, config: Any, data_dir: str | None, log: Callable[[str], None]
) -> dict[str, Any]:
    """Quantise model.onnx in place and score it before and after on the run's dev sample."""
    fp32 = staging / ONNX_FILE
    int8 = staging / f"int8-{ONNX_FILE}"
    log("scoring the fp32 ONNX model on the run's dev sample")
    before = _score_on_dev(OnnxQAModel(fp32), tokenizer, config, data_dir)
    quantize_int8(fp32, int8)
    log("scoring the int8 ONNX model on the run's dev sample")
    after = _score_on_dev(OnnxQAModel(int8), tokenizer, config, data_dir)
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
        f"dev EM/F1 on {before['questions']} questions: fp32 {before['exact_match']:.2f}/{before['f1']:.2f}, "
        f"int8 {after['exact_match']:.2f}/{after['f1']:.2f} ({same} identical answers)"
    )
    return report


# --------------------------------------------------------------------------------- model card


def _number(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_interval(metrics: dict[str, Any], key: str) -> str:
    interval = metrics.get(f"{key}_ci")
    text = _number(metrics.get(key))
    if isinstance(interval, list | tuple) and len(interval) == 2:
        text += f" (95% CI {interval[0]:.2f}–{interval[1]:.2f})"
    return text


def model_card(info: dict[str, Any], settings: dict[str, Any]) -> str:
    """README.md of the export: what was trained, on what, how, how well, and how to use it."""
    from peftqa.backbone import ALIASES
    from peftqa.methods import get_method

    config = info["config"]
    metrics = info["metrics"]
    method = get_method(config["method"])
    base = config["model"]
    if base in ALIASES:
        base_text = f"`{base}` ({ALIASES[base].description})"
    elif Path(base).is_absolute() or os.sep in base:  # a local folder: its name, not this machine's paths
        base_text = f"`{Path(base).name}` (a local folder)"
    else:
        base_text = f"`{base}`"
    scoring = info["scoring"]
    questions = metrics.get("dev_questions") or metrics.get("questions")
    options = ", ".join(f"{k}={v}" for k, v in sorted((config.get("method_options") or {}).items())) or "defaults"
    train_sample = config.get("train_limit")
    train_text = f"a seeded random sample of {train_sample:,} questions" if train_sample else "all 87,599 questions"
    fmt = "ONNX" + (" (dynamic int8)" if info.get("quantize") else "") if info["format"] == "onnx" else "safetensors"
    lines = [
        "---",
        "library_name: transformers" if info["format"] == "hf" else "library_name: onnx",
        "pipeline_tag: question-answering",
        "datasets:",
        "- rajpurkar/squad",
        "tags:",
        "- extractive-qa",
        f"- {config['method']}",
        "- peftqa",
        "---",
        "",
        f"# {info['source_run']}: {method.description} on SQuAD v1.1",
        "",
        f"Extractive question answering, exported by peftqa from the run `{info['source_run']}` as {fmt}"
        + (" with the adapter merged into the base weights." if method.shares_base else "."),
        "",
        "| | |",
        "|---|---|",
        f"| method | `{config['method']}`: {method.description} ({options}) |",
        f"| base model | {base_text} |",
        f"| training data | SQuAD v1.1 train, {train_text}, {config.get('epochs')} epoch(s) |",
        f"| training settings | lr {config.get('lr') or method.default_lr}, batch {config.get('batch_size')}, "
        f"dropout {config.get('dropout')}, seed {config.get('seed')}, "
        f"windows of {scoring['max_length']} tokens with stride {scoring['doc_stride']} |",
        f"| dev exact match | {_with_interval(metrics, 'exact_match')} |",
        f"| dev F1 | {_with_interval(metrics, 'f1')} |",
        f"| scored on | {questions or '?'} SQuAD v1.1 dev questions ({config.get('eval_split', 'dev')}, "
        f"{config.get('eval_sample', '')} sample, seed {config.get('eval_seed', '')}), official EM/F1 |",
        f"| trainable parameters | {metrics.get('trainable_params', '–'):,} of {metrics.get('total_params', '–'):,} |"
        if isinstance(metrics.get("trainable_params"), int) and isinstance(metrics.get("total_params"), int)
        else "| trainable parameters | – |",
        "",
        "Intervals are 95% bootstrap intervals over the scored questions. The answers are cut from",
        f"windows of {scoring['max_length']} tokens (stride {scoring['doc_stride']}), searching the "
        f"{scoring['n_best']} best starts and ends per window for spans of at most "
        f"{scoring['max_answer_tokens']} tokens.",
        "",
        "## Use",
        "",
    ]
    if info["format"] == "hf":
        lines += [
            "Plain transformers, no peftqa code (one window; peftqa itself reads every window of long contexts):",
            "",
            "```python",
            "import torch",
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            "",
            'folder = "PATH/TO/THIS/FOLDER"',
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
            "model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()",
            f'inputs = tokenizer(question, context, truncation="only_second", max_length={scoring["max_length"]}, '
            'return_tensors="pt")',
            "with torch.no_grad():",
            "    output = model(**inputs)",
            "start = int(output.start_logits[0].argmax())",
            f"end = start + int(output.end_logits[0, start : start + {scoring['max_answer_tokens']}].argmax())",
            'answer = tokenizer.decode(inputs["input_ids"][0, start : end + 1])',
            "```",
            "",
            'Where your transformers still has the task, `pipeline("question-answering", model=folder)` loads it '
            f"too (pass `max_seq_len={scoring['max_length']}, doc_stride={scoring['doc_stride']}` for the "
            "windows it was trained on); transformers 5.24, used here, has dropped that pipeline.",
            "`peftqa evaluate THIS_FOLDER` scores it on the run's own dev questions; `peftqa serve` serves it.",
        ]
    else:
        lines += [
            "`model.onnx` takes `input_ids`, `attention_mask` (and `token_type_ids` for BERT-family models),",
            "int64 of shape (batch, sequence), and returns `start_logits` and `end_logits`. The tokenizer files",
            "are in this folder. `peftqa serve --backend onnx THIS_FOLDER` serves it through ONNX Runtime;",
            "`peftqa evaluate THIS_FOLDER` scores it on the run's own dev questions.",
        ]
        if info.get("int8"):
            report = info["int8"]
            lines += [
                "",
                f"Dynamic int8 quantisation, scored on the same {report['fp32']['questions']} dev questions: "
                f"EM/F1 {report['fp32']['exact_match']:.2f}/{report['fp32']['f1']:.2f} in fp32, "
                f"{report['int8']['exact_match']:.2f}/{report['int8']['f1']:.2f} in int8 "
                f"({report['same_answers']} identical answers).",
            ]
    lines += [
        "",
        "SQuAD v1.1: Rajpurkar et al., 2016, CC BY-SA 4.0. Versions at export: "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
        + (f"; peftqa commit {settings['git_commit'][:12]}" if settings.get("git_commit") else "")
        + ".",
        "",
    ]
    return "\n".join(lines)
