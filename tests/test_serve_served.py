"""serve.served: a loaded run answering, its tokenizer copies, its lock, bf16, what the page shows."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from peftqa.serve.loading import load_models
from peftqa.serve.served import ServedModel
from tests.helpers import CONTEXT, QUESTION, runs_of_every_method


@pytest.fixture(scope="module")
def lora(tiny_bert_dir, squad_dir, tmp_path_factory) -> ServedModel:
    """The LoRA run as the page serves it by default (merged into its own fp32 weights)."""
    run_dirs = runs_of_every_method(tiny_bert_dir, squad_dir, tmp_path_factory)
    (served,) = load_models([run_dirs["lora"]])
    return served


def test_concurrent_requests_tokenise_with_copies_of_their_own_which_are_reused(lora):
    served = lora
    with served.borrowed_tokenizer() as mine, served.borrowed_tokenizer() as theirs:
        assert mine is not theirs and served.run.tokenizer not in (mine, theirs)
    with served.borrowed_tokenizer() as later:
        assert later is mine or later is theirs  # given back, not copied again


class _LockThatSaysWhenWaitedFor:
    """`lock` as a context manager that sets `waited_for` as a thread starts to acquire it."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock, self.waited_for = lock, threading.Event()

    def __enter__(self) -> None:
        self.waited_for.set()
        self.lock.acquire()

    def __exit__(self, *exc_info) -> None:
        self.lock.release()


def test_only_the_forward_pass_waits_for_the_model_lock(lora):
    """While one request holds a model's lock, another can tokenise and post-process; it waits only
    for the forward pass."""
    served = lora
    entered = threading.Event()
    real_borrow, real_lock = served.borrowed_tokenizer, served.lock
    watched = _LockThatSaysWhenWaitedFor(real_lock)

    @contextlib.contextmanager
    def borrow_then_signal():
        entered.set()
        with real_borrow() as tokenizer:
            yield tokenizer

    real_lock.acquire()
    try:
        served.borrowed_tokenizer = borrow_then_signal  # type: ignore[method-assign]
        served.lock = watched  # type: ignore[assignment]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(served.answer, QUESTION, CONTEXT, 1)
            assert entered.wait(10)  # got past tokenisation with the lock held elsewhere
            assert watched.waited_for.wait(10)  # and on to the forward pass, which waits for the lock
            assert not pending.done()  # held here: it cannot have answered
            real_lock.release()
            assert pending.result(timeout=30)["answer"]
    finally:
        del served.borrowed_tokenizer
        served.lock = real_lock
        if real_lock.locked():
            real_lock.release()


def test_bf16_autocast_reaches_the_forward_pass(lora, monkeypatch):
    import peftqa.inference.forward as predict_module

    seen = []
    real = predict_module.autocast_for
    monkeypatch.setattr(predict_module, "autocast_for", lambda device, bf16: seen.append(bf16) or real(device, bf16))
    fast = ServedModel("fast", lora.run, bf16=True)
    fast.answer(QUESTION, CONTEXT, top_k=1)
    lora.answer(QUESTION, CONTEXT, top_k=1)
    assert seen == [True, False]
    with real(torch.device("cpu"), True):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with real(torch.device("cpu"), False):
        assert not torch.is_autocast_enabled("cpu")


def test_an_answer_is_the_best_candidate_with_the_others_as_alternatives(lora):
    ranked = lora.top_answers(QUESTION, CONTEXT, 3).candidates
    got = lora.answer(QUESTION, CONTEXT, 3, truths=[ranked[0].text])
    assert (got["name"], got["method"]) == ("lora", "lora")
    assert {k: got[k] for k in ("answer", "start", "end", "score")} == ranked[0].to_dict()
    assert got["alternatives"] == [candidate.to_dict() for candidate in ranked[1:]]
    assert (got["exact_match"], got["f1"]) == (100.0, 100.0) and got["latency_ms"] > 0


def test_describe_names_no_folder_of_the_server(lora, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run is not below the working folder: its name only
    described = lora.describe()
    assert described["run_dir"] == "lora" and described["method"] == "lora"
    assert described["backbone"] == Path(lora.run.settings["config"]["model"]).name
    assert described["trainable_params"] == lora.run.metrics["trainable_params"] > 0
