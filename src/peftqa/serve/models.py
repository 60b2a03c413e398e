"""The trained runs behind the page: found on disk, loaded once, answering exactly as `peftqa evaluate`.

How a run is held (`peftqa serve` flags):

- default, `merged`: each run gets its own copy of the base weights with its adapter merged into them
  (a plain fp32 transformers model, no adapter layers at answer time). Same answers as `evaluate`, and
  the fastest exact mode; it costs one copy of the base weights per run (MiniLM-L6: about 90 MB). When
  the runs would take more than half of the memory available, the page falls back to `shared`.
- `shared` (`--shared-base`): runs on one backbone share one base model; each keeps its unmerged
  adapter in a module tree of its own (peft swaps layers in place, so two adapters cannot live in one
  tree) whose frozen tensors are the base's very objects. For many runs. Only methods loaded as peft
  adapters share; `full` and `bitfit` write into their base, so they get one of their own.
- `fast` (`--fast`): merged, and answers under bf16 autocast: faster on CPUs with bf16 units (AMX,
  AVX-512 BF16; refused on others, where bf16 is emulated and several times slower), and a few answers
  differ from `evaluate`.
- ONNX (`--backend onnx`): folders written by `peftqa export --format onnx`, run by ONNX Runtime; a
  run directory is exported once (fp32, checked as `peftqa export` checks it) into peftqa's cache.

Folders written by `peftqa export --format hf` serve like runs (they are merged already).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import export, files, runs
from peftqa.config import ScoringSettings
from peftqa.data import Example
from peftqa.errors import PeftqaError
from peftqa.features import build_features
from peftqa.files import cache_dir
from peftqa.hardware import available_memory_bytes
from peftqa.metrics import score_answer
from peftqa.postprocess import postprocess
from peftqa.predict import predict_logits

# `peftqa serve` with no run directory shows the newest run of each of these methods.
DEFAULT_METHODS = ("lora", "ia3")
# Where runs are looked for: runs/ (peftqa train), backend/ (the original train.py layout),
# studies/quick/runs/ (make demo).
DEFAULT_SEARCH_DIRS = ("runs", "backend", "studies/quick/runs")
MODES = ("merged", "shared", "fast")
BACKENDS = ("torch", "onnx")
# What every loaded model answers once before serving (see ServedModel.warm_up).
WARM_UP_QUESTION = "Who wrote the novel?"
WARM_UP_CONTEXT = "The novel was written by Jane Austen and published in 1813."
# Merged copies are used while the runs' fp32 weights take at most this share of the available memory.
MEMORY_SHARE = 0.5


@dataclass
class ServedModel:
    """One loaded run, answering one question at a time per forward pass.

    Only the forward pass holds `lock`: tokenisation and post-processing of concurrent requests
    overlap with it. Fast tokenizers refuse concurrent use of one instance ("Already borrowed"), so
    each request borrows a copy of the run's tokenizer from a pool: copies are made only when every
    one is in use (about 50 ms each) and are kept for later requests.
    """

    name: str
    run: runs.LoadedRun
    bf16: bool | None = None  # bf16 autocast (None: the device's default, fp32 on CPU)
    backend: str = "torch fp32"  # what the page says about how it answers
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tokenizers: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _copy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # Read once: RunConfig.from_dict validates the whole config, too slow for every request.
        self.scoring: ScoringSettings = self.run.config.scoring

    @contextlib.contextmanager
    def borrowed_tokenizer(self) -> Iterator[Any]:
        """A copy of the run's tokenizer that no other request uses until the block ends."""
        try:
            tokenizer = self._tokenizers.get_nowait()
        except queue.Empty:
            with self._copy_lock:  # copying reads the Rust tokenizer: one copy at a time
                tokenizer = copy.deepcopy(self.run.tokenizer)
        try:
            yield tokenizer
        finally:
            self._tokenizers.put(tokenizer)

    def warm_up(self) -> None:
        """One short answer at start-up, so that the first user's request does not pay for the first
        forward pass and a tokenizer copy (MiniLM-L6, 2-core AMD VM: 166 ms for the first answer of a
        one-window question, 70-85 ms for the next ones; 97 ms after this warm-up)."""
        self.rank(WARM_UP_QUESTION, WARM_UP_CONTEXT, 1)

    def describe(self) -> dict[str, Any]:
        """What the page and /api/models show about this run (run.json and metrics.json, or peftqa.json)."""
        config = self.run.settings["config"]
        metrics = self.run.metrics
        return {
            "name": self.name,
            "method": self.run.method,
            "backbone": _public_model_name(config.get("model")),
            "backend": self.backend,
            "trainable_params": metrics.get("trainable_params"),
            "total_params": metrics.get("total_params"),
            "trainable_percent": metrics.get("trainable_percent"),
            "dev_exact_match": metrics.get("exact_match"),
            "dev_f1": metrics.get("f1"),
            "dev_questions": metrics.get("dev_questions"),
            "run_dir": public_path(self.run.run_dir),
        }

    def rank(self, question: str, context: str, top_k: int) -> list:
        """`predict.answer_question`, with only the forward pass under the lock."""
        scoring = self.scoring
        example = Example("question", question, context, (), ())
        with self.borrowed_tokenizer() as tokenizer:
            features = build_features([example], tokenizer, scoring.max_length, scoring.doc_stride)
            pad_token_id = tokenizer.pad_token_id
        with self.lock:
            start_logits, end_logits, _ = predict_logits(
                self.run.model, features, scoring.batch_size, pad_token_id, self.bf16
            )
        n_best = max(scoring.n_best, top_k)
        ranked = postprocess([example], features, start_logits, end_logits, n_best, scoring.max_answer_tokens)
        return ranked[example.id][:top_k]

    def answer(self, question: str, context: str, top_k: int, truths: Sequence[str] = ()) -> dict[str, Any]:
        """The best answer, `top_k - 1` alternatives, latency, and EM/F1 when `truths` are given."""
        began = time.perf_counter()
        ranked = self.rank(question, context, top_k)
        latency_ms = 1000.0 * (time.perf_counter() - began)
        # No valid span (a context of white space only): an empty answer, as in the official format.
        best = ranked[0].to_dict() if ranked else {"answer": "", "start": None, "end": None, "score": None}
        result: dict[str, Any] = {
            "name": self.name,
            "method": self.run.method,
            **best,
            "alternatives": [candidate.to_dict() for candidate in ranked[1:]],
            "latency_ms": round(latency_ms, 2),
        }
        if truths:
            result.update(score_answer(result["answer"], truths))
        return result


def public_path(folder: Path) -> str:
    """A folder as the page may show it: relative to where the server started when it is below it,
    else only its name (never an absolute path of the server's machine)."""
    try:
        return Path(folder).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(folder).name


def _public_model_name(model: str | None) -> str | None:
    """A Hub id or alias as it is; a local folder by its name only."""
    if model and (Path(model).is_absolute() or os.sep in model) and Path(model).exists():
        return Path(model).name
    return model


def newest_runs(
    search_dirs: Iterable[str | Path] = DEFAULT_SEARCH_DIRS, methods: Sequence[str] = DEFAULT_METHODS
) -> list[Path]:
    """The newest finished run (by metrics.json time) of each method under the search folders.

    A folder with a run.json but no metrics.json is a run that did not finish, and is passed
    over; an unreadable run.json is too (it is reported when named explicitly).
    """
    newest: dict[str, tuple[float, Path]] = {}
    for root in map(Path, search_dirs):
        if not root.is_dir():
            continue
        for run_json in root.glob(f"*/{runs.RUN_JSON}"):
            metrics = run_json.parent / runs.METRICS_JSON
            try:
                method = files.read_json(run_json)["config"]["method"]
                finished = metrics.stat().st_mtime
            except (PeftqaError, KeyError, TypeError, OSError):
                continue
            if method in methods and finished > newest.get(method, (float("-inf"), None))[0]:
                newest[method] = (finished, run_json.parent)
    return [newest[m][1] for m in methods if m in newest]


def share_weights(base_model):
    """A new module tree whose parameters and buffers are `base_model`'s own tensors (no copy)."""
    memo = {id(tensor): tensor for tensor in base_model.parameters()}
    memo.update({id(tensor): tensor for tensor in base_model.buffers()})
    return copy.deepcopy(base_model, memo)


class _BaseCache:
    """Base QA models by source path, each loaded once."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def skeleton_for(self, settings: dict[str, Any]):
        from peftqa.backbone import load_qa_model
        from peftqa.methods import get_method

        source = runs.base_source(settings)
        if not get_method(settings["config"]["method"]).shares_base:
            return load_qa_model(source)
        if source not in self._models:
            self._models[source] = load_qa_model(source).eval()
        return share_weights(self._models[source])


def merged(loaded: runs.LoadedRun) -> runs.LoadedRun:
    """The run with its peft adapter folded into its own base weights (a plain transformers model)."""
    return dataclasses.replace(loaded, model=export.merge_model(loaded.model))


def threads_per_model(models: int, cores: int | None = None) -> int:
    """The torch (or ONNX Runtime) threads each model gets: the models of a request answer side by
    side, so each gets its share of the cores (2 cores, 2 models, one-window request on the Xeon VM:
    p50 70 -> 53 ms in fp32, 32 -> 29 ms with --fast)."""
    from peftqa.hardware import cpu_cores  # the cores this process may use (a container's CPU set)

    return max(1, (cores or cpu_cores()) // max(1, models))


def merged_copies_fit(folders: Sequence[Path], available: int | None = None) -> bool:
    """Whether one fp32 copy of the weights per run (from metrics.json's total_params) takes at most
    MEMORY_SHARE of the available memory; True when either figure is unknown."""
    available = available_memory_bytes() if available is None else available
    needed = 0
    for folder in folders:
        try:
            needed += 4 * int(files.read_json(folder / runs.METRICS_JSON)["total_params"])
        except (PeftqaError, KeyError, TypeError, ValueError):
            continue
    return available is None or needed <= MEMORY_SHARE * available


def run_digest(run_dir: Path) -> str:
    """A short hash of every file's path, size and modification time in a run directory: a run trained
    again (or changed in any way) gets another digest, without reading its weights."""
    digest = hashlib.sha256()
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(run_dir).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def onnx_export_of(run_dir: Path, report: Callable[[str], None] = print) -> Path:
    """The fp32 ONNX export of a run, made on first use into peftqa's cache (onnx/<run>-<digest>) and
    reused while the run is unchanged; its logits are checked against PyTorch's as `peftqa export` does."""
    folder = cache_dir("onnx") / f"{run_dir.name}-{run_digest(run_dir)}"
    if not export.is_export(folder):
        report(f"exporting {run_dir.name} to ONNX once (about 10-20 s on 2 cores; kept in {folder})")
        folder.parent.mkdir(parents=True, exist_ok=True)
        export.export_run(run_dir, folder, fmt="onnx", force=True, log=lambda line: None)
    return folder


def load_models(
    run_dirs: Sequence[str | Path],
    report: Callable[[str], None] = print,
    mode: str = "merged",
    backend: str = "torch",
    onnx_threads: int | None = None,
) -> list[ServedModel]:
    """Load every run that loads and answers a warm-up question; a broken one is reported by name and skipped.

    Args:
        run_dirs: run directories written by `peftqa train`, or folders written by `peftqa export`
            (hf folders for the torch backend, onnx folders for the onnx backend).
        report: gets one line per skipped run, and one when merged copies would not fit in memory.
        mode: merged (default), shared or fast (see the module's docstring); torch backend only.
        backend: torch, or onnx (ONNX Runtime on exported ONNX folders; a run directory is exported
            once into the cache, see onnx_export_of).
        onnx_threads: ONNX Runtime threads per model (None: its default).
    """
    if backend not in BACKENDS:
        raise PeftqaError(f"unknown backend '{backend}'; known backends: {', '.join(BACKENDS)}")
    if mode not in MODES:
        raise PeftqaError(f"unknown mode '{mode}'; known modes: {', '.join(MODES)}")
    if backend == "onnx":
        export.require_onnx()
    folders = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))  # a run named twice loads once
    if backend == "torch" and mode == "merged" and not merged_copies_fit(folders):
        report("merged copies of these runs would not fit in memory: their base weights are shared instead")
        mode = "shared"
    bases = _BaseCache()
    served = []
    for folder, name in zip(folders, runs.display_names(folders), strict=True):
        try:
            if backend == "onnx" and not export.is_export(folder):
                model = _load_one(onnx_export_of(folder, report), name, mode, backend, bases, onnx_threads)
                # The page names the run it answers for, not the cache folder of its export.
                model.run = dataclasses.replace(model.run, run_dir=folder)
            else:
                model = _load_one(folder, name, mode, backend, bases, onnx_threads)
            model.warm_up()  # a run that cannot answer is found now, not by the first user
            served.append(model)
        except (PeftqaError, OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
            # A broken run must not stop the others: name it, say why, go on.
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            report(f"skipped {folder.name}: {first_line}")
    return served


def _load_one(
    folder: Path, name: str, mode: str, backend: str, bases: _BaseCache, onnx_threads: int | None
) -> ServedModel:
    if export.is_export(folder):
        info = export.read_export_info(folder)
        if info["format"] != ("onnx" if backend == "onnx" else "hf"):
            wanted = "--backend onnx" if info["format"] == "onnx" else "the torch backend (the default)"
            raise PeftqaError(f"an {info['format']} export: serve it with {wanted}")
        loaded = export.load_exported(folder, threads=onnx_threads)
        if backend == "onnx":
            return ServedModel(name, loaded, backend=f"onnxruntime {info.get('quantize') or 'fp32'}")
        return ServedModel(name, loaded, bf16=True if mode == "fast" else None, backend=_torch_backend(mode))
    if mode == "shared":
        _, settings = runs.check_run_dir(folder)
        loaded = runs.load_run(folder, base_model=bases.skeleton_for(settings))
        return ServedModel(name, loaded, backend=_torch_backend(mode))
    return ServedModel(name, merged(runs.load_run(folder)), bf16=mode == "fast" or None, backend=_torch_backend(mode))


def _torch_backend(mode: str) -> str:
    return {"merged": "torch fp32, merged", "shared": "torch fp32, shared base", "fast": "torch bf16, merged"}[mode]
