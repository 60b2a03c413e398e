"""One loaded run as the page serves it: answering exactly as `peftqa evaluate` does, one forward pass
at a time, with what the page shows about it."""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from peftqa.inference import run_folder
from peftqa.inference.evaluate import Asked, ask
from peftqa.inference.run_files import is_count, is_number
from peftqa.scoring.metrics import question_scores_v2, score_answer
from peftqa.serve.discovery import public_model_name, public_path
from peftqa.settings.groups import ScoringSettings

# What every loaded model answers once before serving (see ServedModel.warm_up).
WARM_UP_QUESTION = "Who wrote the novel?"
WARM_UP_CONTEXT = "The novel was written by Jane Austen and published in 1813."


class _LockedForward:
    """A model whose forward calls hold `lock`; everything else (eval, parameters) is the model's own."""

    def __init__(self, model: Any, lock: threading.Lock) -> None:
        self._model = model
        self._lock = lock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@dataclass
class ServedModel:
    """One loaded run, answering one question at a time per forward pass.

    Only the forward pass holds `lock`: tokenisation and post-processing of concurrent requests
    overlap with it. Fast tokenizers refuse concurrent use of one instance ("Already borrowed"), so
    each request borrows a copy of the run's tokenizer from a pool: copies are made only when every
    one is in use (copying is slow next to an answer) and are kept for later requests.
    """

    name: str
    run: run_folder.LoadedRun
    bf16: bool = False  # answers under bf16 autocast (--fast); fp32 by default, as evaluate
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
        """One short answer at start-up: the first forward pass of a process is slower than the next
        ones, and the first request would also pay for a tokenizer copy; this way no user does."""
        self.top_answers(WARM_UP_QUESTION, WARM_UP_CONTEXT, 1)

    def describe(self) -> dict[str, Any]:
        """What the page and /api/models show about this run (run.json and metrics.json, or peftqa.json)."""
        # load_run checked both files; a figure of the wrong type still shows as missing ("–"), never
        # as a page that fails to render for every user because of one run.
        config = self.run.settings.get("config") if isinstance(self.run.settings, dict) else None
        config = config if isinstance(config, dict) else {}
        metrics = self.run.metrics if isinstance(self.run.metrics, dict) else {}
        count = lambda key: metrics.get(key) if is_count(metrics.get(key)) else None  # noqa: E731
        number = lambda key: metrics.get(key) if is_number(metrics.get(key)) else None  # noqa: E731
        model = config.get("model")
        return {
            "name": self.name,
            "method": str(config.get("method", "?")),
            "backbone": public_model_name(model) if isinstance(model, str) else None,
            "backend": self.backend,
            "trainable_params": count("trainable_params"),
            "total_params": count("total_params"),
            "trainable_percent": number("trainable_percent"),
            "dev_exact_match": number("exact_match"),
            "dev_f1": number("f1"),
            "dev_questions": count("eval_questions"),
            "null_threshold": number("null_threshold"),
            "run_dir": public_path(self.run.run_dir),
        }

    def top_answers(self, question: str, context: str, top_k: int) -> Asked:
        """`predict.ask` (the `top_k` best spans, the null score, the run's null threshold), with only the
        forward pass under the lock."""
        model = _LockedForward(self.run.model, self.lock)
        with self.borrowed_tokenizer() as tokenizer:
            return ask(model, tokenizer, question, context, top_k, self.scoring, self.bf16, self.run.null_threshold)

    def answer(
        self, question: str, context: str, top_k: int, truths: Sequence[str] = (), no_answer: bool = False
    ) -> dict[str, Any]:
        """The best answer ("" with no_answer when the model abstains, or finds no valid span), `top_k - 1`
        alternatives, the null score beside the best span's, latency, and EM/F1 when `truths` are given
        or the true answer is "no answer" (`no_answer`: SQuAD 2.0's rule, 100 exactly for an empty answer)."""
        began = time.perf_counter()
        asked = self.top_answers(question, context, top_k)
        latency_ms = 1000.0 * (time.perf_counter() - began)
        result: dict[str, Any] = {
            "name": self.name,
            "method": self.run.method,
            **asked.to_dict(),
            "latency_ms": round(latency_ms, 2),
        }
        if no_answer:
            result.update(question_scores_v2({"asked": result["answer"]}, {"asked": []})["asked"])
        elif truths:
            result.update(score_answer(result["answer"], truths))
        return result
