"""The trained runs behind the page: found on disk, loaded once, base weights shared per backbone.

By default every LoRA or (IA)3 run on the same backbone gets its own module tree (peft swaps layers
in place, so two adapters cannot live in one tree), but the frozen tensors of those trees are the very
same objects: the base model is loaded once and each run's skeleton is a deep copy that re-uses its
parameters and buffers. Only methods loaded as peft adapters share: peft puts unmerged adapter
layers beside the frozen weights and never writes them. Methods with a load of their own write
into the base in place (`full` every weight, `bitfit` every bias), so they get a base of their own.

`fast=True` (`peftqa serve --fast`) trades that memory for speed: each run's adapter is merged into
its own copy of the weights and answers run under bf16 autocast.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import runs
from peftqa.errors import PeftqaError
from peftqa.metrics import score_answer
from peftqa.predict import answer_question

# `peftqa serve` with no run directory shows the newest run of each of these methods.
DEFAULT_METHODS = ("lora", "ia3")
# Where runs are looked for: `peftqa train`/`make demo` write runs/, the train.py shim backend/.
# runs/ (peftqa train), backend/ (the original train.py layout), studies/quick/runs/ (make demo).
DEFAULT_SEARCH_DIRS = ("runs", "backend", "studies/quick/runs")


@dataclass
class ServedModel:
    """One loaded run and the lock that keeps its model and tokenizer to one request at a time.

    Fast tokenizers refuse concurrent use ("Already borrowed"), and the peft wrappers are per run,
    so one lock per run is enough; runs still answer in parallel with each other.
    """

    name: str
    run: runs.LoadedRun
    bf16: bool | None = None  # bf16 autocast (None: the device's default, fp32 on CPU)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, Any]:
        """What the page and /api/models show about this run (from run.json and metrics.json)."""
        config = self.run.settings["config"]
        metrics = self.run.metrics
        return {
            "name": self.name,
            "method": self.run.method,
            "backbone": config.get("model"),
            "trainable_params": metrics.get("trainable_params"),
            "total_params": metrics.get("total_params"),
            "trainable_percent": metrics.get("trainable_percent"),
            "dev_exact_match": metrics.get("exact_match"),
            "dev_f1": metrics.get("f1"),
            "dev_questions": metrics.get("dev_questions"),
            "run_dir": str(self.run.run_dir),
        }

    def answer(self, question: str, context: str, top_k: int, truths: Sequence[str] = ()) -> dict[str, Any]:
        """The best answer, `top_k - 1` alternatives, latency, and EM/F1 when `truths` are given."""
        began = time.perf_counter()
        with self.lock:
            ranked = answer_question(
                self.run.model, self.run.tokenizer, question, context, top_k, self.run.config.scoring, self.bf16
            )
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
                method = runs.read_json(run_json)["config"]["method"]
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

        source = runs.base_source(settings)
        from peftqa.methods import get_method

        if not get_method(settings["config"]["method"]).shares_base:
            return load_qa_model(source)
        if source not in self._models:
            self._models[source] = load_qa_model(source).eval()
        return share_weights(self._models[source])


def merged(loaded: runs.LoadedRun) -> runs.LoadedRun:
    """The run with its peft adapter folded into the base weights (plain transformers model)."""
    if not hasattr(loaded.model, "merge_and_unload"):  # full, bitfit: the weights are already plain
        return loaded
    return dataclasses.replace(loaded, model=loaded.model.merge_and_unload().eval())


def load_models(
    run_dirs: Sequence[str | Path], report: Callable[[str], None] = print, fast: bool = False
) -> list[ServedModel]:
    """Load every run that loads; a broken one is reported by name and skipped.

    Args:
        run_dirs: run directories written by `peftqa train`.
        report: gets one line per skipped run.
        fast: each run gets its own copy of the base weights with its adapter merged into them (no
            adapter layers at answer time), and answers under bf16 autocast. Faster on CPUs with bf16
            units; answers can differ from fp32 `evaluate` on a few questions.
    """
    folders = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))  # a run named twice loads once
    bases = _BaseCache()
    served = []
    for folder, name in zip(folders, runs.display_names(folders), strict=True):
        try:
            _, settings = runs.check_run_dir(folder)
            if fast:
                served.append(ServedModel(name, merged(runs.load_run(folder)), bf16=True))
                continue
            loaded = runs.load_run(folder, base_model=bases.skeleton_for(settings))
        except (PeftqaError, OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
            # A broken run must not stop the others: name it, say why, go on.
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            report(f"skipped {folder.name}: {first_line}")
            continue
        served.append(ServedModel(name, loaded))
    return served
