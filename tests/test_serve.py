"""The comparison page and JSON API: every route, every refusal, shared weights, threads, fuzzing."""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftqa import runs
from peftqa.cli import main
from peftqa.config import ScoringSettings
from peftqa.data import load_examples
from peftqa.methods import method_names
from peftqa.predict import answer_question
from peftqa.serve import create_app
from peftqa.serve.discovery import newest_runs
from peftqa.serve.loading import load_models, share_weights
from peftqa.serve.served import ServedModel
from peftqa.train import train
from tests.conftest import tiny_run_config

WINDOWS = ScoringSettings(max_length=128, doc_stride=32)  # the windows tiny_run_config trains with

CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."
QUESTION = "Who wrote Pride and Prejudice?"
METHODS = tuple(method_names())  # every registered method, so a new one is checked for sharing too


def train_tiny_runs(methods, model_dir: Path, squad_dir: Path, root: Path) -> dict[str, Path]:
    """One finished tiny run (two optimiser steps) per method, in root/<method>."""
    with pytest.MonkeyPatch.context() as patch:
        # Module-scoped fixtures start before the autouse cache fixture: keep caches out of $HOME here too.
        patch.setenv("PEFTQA_CACHE_DIR", str(root / "cache"))
        for method in methods:
            train(tiny_run_config(model_dir, squad_dir, root / method, method, max_steps=2), log=lambda line: None)
    return {method: root / method for method in methods}


@pytest.fixture(scope="module")
def run_dirs(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    """A tiny run of every method, trained once for the module."""
    return train_tiny_runs(METHODS, tiny_bert_dir, squad_dir, tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="module")
def models(run_dirs) -> list[ServedModel]:
    """What the page serves by default: each run merged into its own fp32 weights."""
    return load_models([run_dirs["lora"], run_dirs["ia3"]])


@pytest.fixture(scope="module")
def shared_models(run_dirs) -> list[ServedModel]:
    return load_models([run_dirs["lora"], run_dirs["ia3"]], mode="shared")


@pytest.fixture(scope="module")
def client(models):
    return create_app({"TESTING": True, "MODELS": models}).test_client()


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`peftqa serve` divides the process's torch threads between its models: undo it after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _predict(client, **body):
    return client.post("/api/predict", json={"context": CONTEXT, "question": QUESTION, **body})


# --- loading and shared weights ---------------------------------------------------------------


def _frozen(model) -> list[torch.Tensor]:
    """The base weights inside a peft model (everything but adapters and the trained QA head)."""
    adapter_marks = ("lora_", "ia3_", "modules_to_save")
    return [p for name, p in model.named_parameters() if not any(mark in name for mark in adapter_marks)]


def test_runs_on_one_backbone_share_their_base_weights(shared_models):
    lora, ia3 = (m.run.model for m in shared_models)
    ia3_storage = {p.data_ptr() for p in ia3.parameters()}
    frozen = _frozen(lora)
    assert len(frozen) > 10
    assert all(p.data_ptr() in ia3_storage for p in frozen)


def test_loading_every_method_leaves_the_shared_base_weights_unchanged(run_dirs, tiny_bert_dir):
    from peftqa.backbone import load_qa_model

    served = load_models([run_dirs[m] for m in METHODS], mode="shared")
    assert [m.run.method for m in served] == list(METHODS)
    fresh = dict(load_qa_model(str(tiny_bert_dir)).named_parameters())
    lora = next(m for m in served if m.run.method == "lora").run.model
    base = lora.get_base_model()
    compared = 0
    for name, parameter in base.named_parameters():
        original = name.replace(".base_layer", "")
        if original in fresh and "qa_outputs" not in name:  # the QA head is new at every load
            assert torch.equal(parameter, fresh[original]), name
            compared += 1
    assert compared > 20


@pytest.mark.parametrize("method", ["full", "bitfit"])
def test_runs_that_write_into_their_base_get_one_of_their_own(run_dirs, method):
    lora, other = load_models([run_dirs["lora"], run_dirs[method]], mode="shared")
    other_storage = {p.data_ptr() for p in other.run.model.parameters()}
    assert not any(p.data_ptr() in other_storage for p in _frozen(lora.run.model))
    # Loaded after it, the other run has not changed the LoRA run's answers.
    alone = runs.load_run(run_dirs["lora"])
    expected = answer_question(alone.model, alone.tokenizer, QUESTION, CONTEXT, scoring=WINDOWS)
    assert lora.answer(QUESTION, CONTEXT, top_k=1)["score"] == pytest.approx(expected[0].probability, abs=1e-6)


@pytest.mark.parametrize("mode", ["merged", "shared"])
def test_served_answers_are_those_of_the_run_loaded_alone(run_dirs, mode):
    for served in load_models([run_dirs["lora"], run_dirs["ia3"]], mode=mode):
        alone = runs.load_run(run_dirs[served.name])
        expected = answer_question(alone.model, alone.tokenizer, QUESTION, CONTEXT, top_k=3, scoring=WINDOWS)
        got = served.answer(QUESTION, CONTEXT, top_k=3)
        assert [got["answer"]] + [a["answer"] for a in got["alternatives"]] == [c.text for c in expected]
        assert got["score"] == pytest.approx(expected[0].probability, abs=1e-5)


@pytest.mark.parametrize("mode", ["merged", "fast"])
def test_merged_modes_give_each_run_its_own_weights_with_no_adapter_layers(run_dirs, mode):
    from peftqa.data import Example
    from peftqa.features import build_features
    from peftqa.predict import predict_logits

    served = load_models([run_dirs[m] for m in ("lora", "ia3", "bitfit")], mode=mode)
    assert [m.bf16 for m in served] == [True if mode == "fast" else None] * 3
    for model in served:
        names = [name for name, _ in model.run.model.named_parameters()]
        assert not any(mark in name for name in names for mark in ("lora_", "ia3_", "base_layer"))
        # Merged in fp32, the model computes what the unmerged adapter does.
        alone = runs.load_run(run_dirs[model.run.method])
        features = build_features([Example("q", QUESTION, CONTEXT, (), ())], alone.tokenizer, 128, 32)
        merged_starts, merged_ends, _ = predict_logits(model.run.model, features, 4, 0, bf16=False)
        starts, ends, _ = predict_logits(alone.model, features, 4, 0, bf16=False)
        for merged_logits, plain_logits in ((merged_starts, starts), (merged_ends, ends)):
            assert np.allclose(np.concatenate(merged_logits), np.concatenate(plain_logits), atol=1e-4)
        got = model.answer(QUESTION, CONTEXT, top_k=2)
        assert got["answer"] == CONTEXT[got["start"] : got["end"]]
    lora_storage = {p.data_ptr() for p in served[0].run.model.parameters()}
    assert not any(p.data_ptr() in lora_storage for p in served[1].run.model.parameters())


def test_default_answers_are_those_of_evaluate_on_every_dev_question(models, run_dirs, squad_dir):
    """The page's default mode and `peftqa evaluate` give the same answer to every fixture question."""
    from peftqa.data import eval_questions
    from peftqa.features import build_features
    from peftqa.predict import evaluate

    for served in models:
        alone = runs.load_run(run_dirs[served.name])
        examples, _ = eval_questions(str(squad_dir), alone.config.questions)
        features = build_features(examples, alone.tokenizer, 128, 32)
        expected = evaluate(alone.model, examples, features, alone.tokenizer.pad_token_id, alone.config.scoring)
        assert len(examples) >= 5
        got = {e.id: served.answer(e.question, e.context, top_k=1)["answer"] for e in examples}
        assert got == expected.predictions


def test_served_exports_answer_as_their_runs(run_dirs, tmp_path):
    from peftqa.export import export_run

    export_run(run_dirs["lora"], tmp_path / "hf", "hf", log=lambda line: None)
    export_run(run_dirs["lora"], tmp_path / "onnx", "onnx", log=lambda line: None)
    (run,) = load_models([run_dirs["lora"]])
    (hf,) = load_models([tmp_path / "hf"])
    (onnx,) = load_models([tmp_path / "onnx"], backend="onnx")
    assert (hf.backend, onnx.backend) == ("torch fp32, merged", "onnxruntime fp32")
    expected = run.answer(QUESTION, CONTEXT, top_k=3)
    for served in (hf, onnx):
        got = served.answer(QUESTION, CONTEXT, top_k=3)
        assert [got["answer"], *(a["answer"] for a in got["alternatives"])] == [
            expected["answer"],
            *(a["answer"] for a in expected["alternatives"]),
        ]
        assert got["score"] == pytest.approx(expected["score"], abs=1e-5)
    lines: list[str] = []
    loaded = load_models([tmp_path / "onnx", run_dirs["lora"]], report=lines.append)
    assert [m.name for m in loaded] == ["lora"] and "serve it with --backend onnx" in lines[0]


def test_the_onnx_backend_exports_a_run_once_and_again_after_it_changes(run_dirs, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import shutil

    import peftqa.export as export_module

    run = tmp_path / "lora"
    shutil.copytree(run_dirs["lora"], run)
    exports: list[str] = []
    real_export = export_module.export_run
    monkeypatch.setattr(export_module, "export_run", lambda *a, **k: exports.append(str(a[1])) or real_export(*a, **k))
    lines: list[str] = []
    first = load_models([run], backend="onnx", report=lines.append)
    assert first[0].backend == "onnxruntime fp32" and first[0].describe()["run_dir"] == "lora"  # not the cache's
    assert len(exports) == 1 and "exporting lora to ONNX once" in lines[0]
    # Same answers as the run itself (the export is checked against PyTorch too).
    expected = load_models([run])[0].answer(QUESTION, CONTEXT, top_k=3)
    got = first[0].answer(QUESTION, CONTEXT, top_k=3)
    assert [got["answer"], *(a["answer"] for a in got["alternatives"])] == [
        expected["answer"],
        *(a["answer"] for a in expected["alternatives"]),
    ]
    load_models([run], backend="onnx")
    assert len(exports) == 1  # unchanged run: the cached export
    (run / "run.json").write_text((run / "run.json").read_text() + " ")  # as if trained again
    load_models([run], backend="onnx")
    assert len(exports) == 2 and exports[1] != exports[0]


def test_merged_copies_are_given_up_when_they_would_not_fit(run_dirs):
    from peftqa.serve.loading import merged_copies_fit

    folders = [run_dirs["lora"], run_dirs["ia3"]]
    assert merged_copies_fit(folders, available=10**12)
    assert not merged_copies_fit(folders, available=1000)


def test_concurrent_requests_tokenise_with_copies_of_their_own_which_are_reused(models):
    served = models[0]
    with served.borrowed_tokenizer() as mine, served.borrowed_tokenizer() as theirs:
        assert mine is not theirs and served.run.tokenizer not in (mine, theirs)
    with served.borrowed_tokenizer() as later:
        assert later is mine or later is theirs  # given back, not copied again


def test_each_model_gets_its_share_of_the_cores():
    from peftqa.serve.loading import threads_per_model

    assert [threads_per_model(models, cores=8) for models in (0, 1, 2, 3, 16)] == [8, 8, 4, 2, 1]


def test_loaded_models_have_answered_once_before_the_first_request(run_dirs, monkeypatch):
    import peftqa.predict as predict_module

    forward_passes = []
    real = predict_module.predict_logits
    monkeypatch.setattr(predict_module, "predict_logits", lambda *a, **k: forward_passes.append(1) or real(*a, **k))
    loaded = load_models([run_dirs["lora"], run_dirs["ia3"]])
    assert len(forward_passes) == 2
    # The warm-up left a tokenizer copy for the first request: it borrows that one, no new copy.
    assert all(model._tokenizers.qsize() == 1 for model in loaded)


def test_a_run_that_cannot_answer_is_skipped_at_load_not_at_the_first_request(run_dirs, monkeypatch):
    import peftqa.predict as predict_module

    real = predict_module.predict_logits
    forward_passes: list[int] = []

    def second_run_fails(*args, **kwargs):  # runs load in the order given: ia3 is the second
        forward_passes.append(1)
        if len(forward_passes) == 2:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_logits", second_run_fails)
    lines: list[str] = []
    loaded = load_models([run_dirs["lora"], run_dirs["ia3"]], report=lines.append)
    assert [model.name for model in loaded] == ["lora"]
    assert lines == ["skipped ia3: mat1 and mat2 shapes cannot be multiplied"]


def test_only_the_forward_pass_waits_for_the_model_lock(models):
    """While one request holds a model's lock, another can tokenise and post-process; it waits only
    for the forward pass."""
    import threading

    served = models[0]
    entered = threading.Event()
    real_borrow = served.borrowed_tokenizer

    @contextlib.contextmanager
    def borrow_then_signal():
        entered.set()
        with real_borrow() as tokenizer:
            yield tokenizer

    served.lock.acquire()
    try:
        served.borrowed_tokenizer = borrow_then_signal  # type: ignore[method-assign]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(served.answer, QUESTION, CONTEXT, 1)
            assert entered.wait(10)  # got past tokenisation with the lock held elsewhere
            time.sleep(0.05)
            assert not pending.done()  # but not past the forward pass
            served.lock.release()
            assert pending.result(timeout=30)["answer"]
    finally:
        del served.borrowed_tokenizer
        if served.lock.locked():
            served.lock.release()


def test_bf16_autocast_reaches_the_forward_pass(models, monkeypatch):
    import peftqa.predict as predict_module

    seen = []
    real = predict_module.autocast_for
    monkeypatch.setattr(
        predict_module, "autocast_for", lambda device, bf16=None: seen.append(bf16) or real(device, bf16)
    )
    fast = ServedModel("fast", models[0].run, bf16=True)
    fast.answer(QUESTION, CONTEXT, top_k=1)
    models[0].answer(QUESTION, CONTEXT, top_k=1)
    assert seen == [True, None]
    with real(torch.device("cpu"), True):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with real(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")


def test_share_weights_copies_modules_not_tensors(tiny_bert_dir):
    from peftqa.backbone import load_qa_model

    base = load_qa_model(str(tiny_bert_dir))
    copy = share_weights(base)
    assert copy is not base and copy.bert.encoder is not base.bert.encoder
    assert all(a is b for a, b in zip(copy.parameters(), base.parameters(), strict=True))
    assert all(a is b for a, b in zip(copy.buffers(), base.buffers(), strict=True))


def test_a_run_named_twice_loads_once_and_names_stay_unique(run_dirs, tmp_path):
    import shutil

    other = tmp_path / "elsewhere" / "lora"
    shutil.copytree(run_dirs["lora"], other)
    loaded = load_models([run_dirs["lora"], Path(run_dirs["lora"]) / ".." / "lora", other])
    assert [m.name for m in loaded] == [f"{run_dirs['lora'].parent.name}/lora", "elsewhere/lora"]


def test_broken_run_is_reported_by_name_and_skipped(run_dirs, tmp_path):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / runs.RUN_JSON).write_text("{not json")
    lines: list[str] = []
    loaded = load_models([broken, run_dirs["lora"], tmp_path / "missing"], report=lines.append)
    assert [m.name for m in loaded] == ["lora"]
    assert len(lines) == 2 and "broken-run" in lines[0] and "missing" in lines[1]


def test_newest_run_of_each_method_is_found(run_dirs, tmp_path):
    import shutil

    for folder, method, age in (("runs/old", "lora", 100), ("backend/lora", "lora", 10), ("runs/q-ia3", "ia3", 50)):
        target = tmp_path / folder
        shutil.copytree(run_dirs[method], target)
        stamp = time.time() - age
        os.utime(target / runs.METRICS_JSON, (stamp, stamp))
    unfinished = tmp_path / "runs" / "unfinished"
    shutil.copytree(run_dirs["lora"], unfinished)
    (unfinished / runs.METRICS_JSON).unlink()
    found = newest_runs([tmp_path / "runs", tmp_path / "backend"])
    assert found == [tmp_path / "backend" / "lora", tmp_path / "runs" / "q-ia3"]


# --- routes -----------------------------------------------------------------------------------


def test_health_and_models(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "models": 2}
    described = client.get("/api/models").get_json()["models"]
    assert [m["name"] for m in described] == ["lora", "ia3"]
    assert {m["method"] for m in described} == {"lora", "ia3"}
    assert all(m["trainable_params"] > 0 and m["dev_f1"] is not None for m in described)
    assert {m["backend"] for m in described} == {"torch fp32, merged"}


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_api_models_shows_no_absolute_server_path(client, run_dirs, monkeypatch, tmp_path):
    described = client.get("/api/models").get_json()
    assert not [text for text in _strings(described) if text.startswith("/") or "\\" in text]
    assert str(run_dirs["lora"].parent) not in json.dumps(described)
    assert [m["run_dir"] for m in described["models"]] == ["lora", "ia3"]  # not below the working folder
    monkeypatch.chdir(run_dirs["lora"].parent.parent)  # a server started above the runs: relative paths
    relative = client.get("/api/models").get_json()["models"]
    assert [m["run_dir"] for m in relative] == [f"{run_dirs['lora'].parent.name}/{n}" for n in ("lora", "ia3")]


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.content_type.startswith("image/svg+xml")
    assert b"<svg" in response.get_data()
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


def test_predict_answers_with_every_model_and_scores_them(client):
    body = _predict(client, answers=["Jane Austen", "Austen"]).get_json()
    assert [m["name"] for m in body["models"]] == ["lora", "ia3"]
    for model in body["models"]:
        assert CONTEXT[model["start"] : model["end"]] == model["answer"]
        assert 0 < model["score"] <= 1 and model["latency_ms"] > 0
        assert len(model["alternatives"]) == 3  # by default the answer and its 3 best alternatives
        assert {"exact_match", "f1"} <= set(model)
    assert "better" in body


def test_predict_without_answers_has_no_scores(client):
    body = _predict(client, models=["ia3"], top_k=1).get_json()
    (model,) = body["models"]
    assert model["name"] == "ia3" and model["alternatives"] == [] and "f1" not in model and "better" not in body


def test_scores_are_the_official_max_over_answers(client):
    answer = _predict(client, models=["lora"]).get_json()["models"][0]["answer"]
    body = _predict(client, models=["lora"], answers=["something else entirely", answer]).get_json()
    assert body["models"][0]["exact_match"] == 100.0 and body["models"][0]["f1"] == 100.0


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"question": QUESTION}, 400, "'context' is required"),
        ({"context": CONTEXT}, 400, "'question' is required"),
        ({"context": "  \n", "question": QUESTION}, 400, "'context' must not be empty"),
        ({"context": CONTEXT, "question": 7}, 400, "'question' must be a string"),
        ({"context": CONTEXT, "question": QUESTION, "answers": "Jane"}, 200, None),
        ({"context": CONTEXT, "question": QUESTION, "answers": [1]}, 400, "'answers' must be a list of strings"),
        ({"context": CONTEXT, "question": QUESTION, "models": ["nope"]}, 400, "unknown model 'nope'"),
        ({"context": CONTEXT, "question": QUESTION, "models": "lora"}, 400, "'models' must be a list"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": 0}, 400, "'top_k'"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": 21}, 400, "'top_k'"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": True}, 400, "'top_k'"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": 2.5}, 400, "'top_k'"),
        ({"context": "x" * 100_001, "question": QUESTION}, 413, "the limit is 100,000"),
        ({"context": CONTEXT, "question": "\ud800"}, 400, "not valid Unicode"),
        ([CONTEXT, QUESTION], 400, "must be a JSON object"),
    ],
)
def test_predict_refuses_bad_input_with_json(client, body, status, fragment):
    response = client.post("/api/predict", json=body)
    assert response.status_code == status
    if fragment:
        assert fragment in response.get_json()["error"]


def test_predict_refuses_what_is_not_json(client):
    not_json = client.post("/api/predict", data="context=x", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415 and "application/json" in not_json.get_json()["error"]
    broken = client.post("/api/predict", data="{", content_type="application/json")
    assert broken.status_code == 400 and "not valid JSON" in broken.get_json()["error"]


def test_oversized_body_is_refused_before_it_is_read(client):
    huge = json.dumps({"context": "x" * 2_000_000, "question": QUESTION})
    response = client.post("/api/predict", data=huge, content_type="application/json")
    assert response.status_code == 413 and "larger than" in response.get_json()["error"]


def test_wrong_method_and_unknown_url_are_json_errors(client):
    assert client.get("/api/predict").status_code == 405
    assert "error" in client.get("/api/predict").get_json()
    assert client.get("/api/nothing").status_code == 404


class _PointAtWord(torch.nn.Module):
    """A stand-in QA model whose start and end logits pick out one token id wherever it is."""

    def __init__(self, token_id: int) -> None:
        super().__init__()
        self.token_id = token_id
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, start_positions=None, end_positions=None, **_):
        logits = (input_ids == self.token_id).float() * 10.0
        return SimpleNamespace(start_logits=logits, end_logits=logits, loss=torch.zeros(()))


def test_answer_far_beyond_the_first_window_is_found(models):
    tokenizer = models[0].run.tokenizer
    context = "The river runs through the old town. " * 400 + "A zebra lives here."
    settings_ = {"config": {"method": "lora", "model": "stub", "max_length": 128, "doc_stride": 32}}
    stub = runs.LoadedRun(
        Path("stub"), settings_, {}, _PointAtWord(tokenizer.convert_tokens_to_ids("zebra")), tokenizer
    )
    app = create_app({"TESTING": True, "MODELS": [ServedModel("stub", stub)]})
    model = (
        app.test_client().post("/api/predict", json={"context": context, "question": "Who?"}).get_json()["models"][0]
    )
    assert model["answer"] == "zebra" and model["start"] == context.index("zebra") > 10_000
    # The page's "in the context" snippet is a window around the answer, not the text before it.
    page = app.test_client().post("/", data={"context": context, "question": "Who?"}).get_data(as_text=True)
    snippet = page.split('<blockquote class="context">', 1)[1].split("</blockquote>", 1)[0]
    assert "<mark>zebra</mark>" in snippet and len(snippet) < 800
    assert snippet.startswith("…") and "lives here." in snippet


def test_excerpt_keeps_the_answer_with_little_text_before_it():
    from peftqa.serve.compare import EXCERPT_AFTER, EXCERPT_BEFORE, excerpt

    context = "word " * 2000 + "ANSWER" + " tail" * 2000
    start = context.index("ANSWER")
    cut = excerpt(context, start, start + 6)
    assert cut["answer"] == "ANSWER"
    assert cut["before"].startswith("…") and len(cut["before"]) <= EXCERPT_BEFORE + 1
    assert cut["after"].endswith("…") and len(cut["after"]) <= EXCERPT_AFTER + 1
    short = excerpt("Jane Austen wrote it.", 0, 11)
    assert short == {"before": "", "answer": "Jane Austen", "after": " wrote it."}
    none = excerpt(context, None, None)
    assert none["answer"] == "" and len(none["before"]) <= EXCERPT_BEFORE + EXCERPT_AFTER + 1


# --- the page ---------------------------------------------------------------------------------


def test_page_shows_the_form_examples_and_model_columns(client):
    page = client.get("/").get_data(as_text=True)
    for needed in ('<label for="context">', '<label for="question">', '<label for="answers">', "CC BY-SA"):
        assert needed in page
    assert 'data-model="lora"' in page and 'data-model="ia3"' in page
    assert "cdn" not in page.lower() and "https://" not in page.split("<footer")[0]
    assert client.get("/").headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_picking_an_example_fills_the_form(client):
    example = load_examples()["examples"][0]
    page = client.get(f"/?example={example['id']}").get_data(as_text=True)
    assert example["question"] in page and example["answers"][0] in page


def test_static_assets_are_served_locally(client):
    assert client.get("/static/compare.css").status_code == 200
    assert client.get("/static/compare.js").status_code == 200


def test_form_post_shows_answers_highlight_and_scores(client):
    page = client.post("/", data={"context": CONTEXT, "question": QUESTION, "answers": "Jane Austen\nAusten"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert text.count("<mark>") == 2 and text.count('class="score"') == 2


def test_form_says_which_model_did_better(client):
    text = client.post("/", data={"context": CONTEXT, "question": QUESTION, "answers": "Jane Austen"}).get_data(
        as_text=True
    )
    assert 'id="verdict"' in text and ("did better" in text or "scored the same" in text)


def test_context_at_the_size_limit_is_answered(client):
    context = (CONTEXT + " ") * (100_000 // (len(CONTEXT) + 1))
    body = _predict(client, context=context).get_json()
    assert all(context[m["start"] : m["end"]] == m["answer"] for m in body["models"])


def test_form_escapes_everything(client):
    context = "<script>alert(1)</script> Jane <b>Austen</b> wrote it."
    text = client.post("/", data={"context": context, "question": "<img src=x>"}).get_data(as_text=True)
    assert "<script>alert" not in text and "<img src=x>" not in text and "&lt;script&gt;" in text


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        ({"context": "", "question": QUESTION}, 400, "must not be empty"),
        ({"context": "x" * 100_001, "question": QUESTION}, 413, "the limit is 100,000"),
        ({"context": CONTEXT, "question": QUESTION, "models": "nope"}, 400, "unknown model"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": "many"}, 400, "top_k"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": "²"}, 400, "top_k"),
        ({"context": CONTEXT, "question": QUESTION, "top_k": "9" * 5000}, 400, "top_k"),
    ],
)
def test_form_shows_clear_messages(client, data, status, fragment):
    response = client.post("/", data=data)
    assert response.status_code == status and fragment in response.get_data(as_text=True)
    assert 'role="alert"' in response.get_data(as_text=True)


def test_form_body_over_the_byte_limit_gets_the_page_with_a_message(client):
    response = client.post("/", data={"context": "é" * 700_000, "question": QUESTION})
    assert response.status_code == 413 and "the limit is 100,000 characters" in response.get_data(as_text=True)


# --- threads and fuzzing ----------------------------------------------------------------------


def test_concurrent_requests_are_answered_correctly(client):
    questions = [QUESTION, "When was it published?", "Who published the novel?"]
    expected = {q: _predict(client, question=q).get_json() for q in questions}
    asked = questions * 8

    def ask(question):
        return question, _predict(client, question=question).get_json()

    with ThreadPoolExecutor(max_workers=16) as pool:  # more threads than models, workers and cores
        results = list(pool.map(ask, asked))
    for question, body in results:
        got = [(m["name"], m["answer"], m["start"], m["end"]) for m in body["models"]]
        want = [(m["name"], m["answer"], m["start"], m["end"]) for m in expected[question]["models"]]
        assert got == want


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_fields = st.sampled_from(["context", "question", "answers", "models", "top_k"]) | st.text(max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_fields, _json_values | st.text(), max_size=5) | _json_values)
def test_fuzz_api_never_fails_with_500(client, body):
    response = client.post("/api/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 400, 413)
    payload = response.get_json()
    assert ("models" in payload) if response.status_code == 200 else isinstance(payload["error"], str)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.dictionaries(_fields, st.text(max_size=60), max_size=5), raw=st.binary(max_size=60))
def test_fuzz_form_and_raw_bodies_never_fail_with_500(client, form, raw):
    assert client.post("/", data=form).status_code in (200, 400, 413)
    for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
        assert client.post("/api/predict", data=raw, content_type=content_type).status_code in (400, 415)


# --- the command ------------------------------------------------------------------------------


def test_serve_with_no_runs_names_the_command_that_trains_them(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "make demo" in err and "peftqa train" in err and "Traceback" not in err


def test_serve_starts_waitress_with_the_runs_that_load(capsys, run_dirs, tmp_path, monkeypatch):
    import waitress

    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app, **kwargs))
    assert main(["serve", str(run_dirs["lora"]), str(tmp_path / "gone"), "--port", "5123"]) == 0
    assert started["port"] == 5123 and started["host"] == "127.0.0.1"
    assert started["app"].test_client().get("/healthz").get_json()["models"] == 1
    assert "skipped gone" in capsys.readouterr().err


def test_serve_debug_uses_the_flask_development_server(run_dirs, monkeypatch):
    from flask import Flask

    started = {}
    monkeypatch.setattr(Flask, "run", lambda app, **kwargs: started.update(kwargs))
    assert main(["serve", str(run_dirs["ia3"]), "--debug"]) == 0
    assert started["debug"] is True


@pytest.mark.parametrize(
    ("flags", "bf16", "merged"), [([], None, True), (["--fast"], True, True), (["--shared-base"], None, False)]
)
def test_serve_modes(run_dirs, monkeypatch, flags, bf16, merged):
    import waitress

    import peftqa.hardware

    monkeypatch.setattr(peftqa.hardware, "cpu_has_bf16", lambda: True)
    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app))
    assert main(["serve", str(run_dirs["lora"]), *flags]) == 0
    (served,) = started["app"].extensions["peftqa_models"]
    assert served.bf16 is bf16 and hasattr(served.run.model, "merge_and_unload") is not merged


def test_serve_onnx_backend_serves_onnx_exports(run_dirs, monkeypatch, tmp_path, capsys):
    import waitress

    from peftqa.export import export_run

    export_run(run_dirs["ia3"], tmp_path / "onnx", "onnx", log=lambda line: None)
    started = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: started.update(app=app))
    assert main(["serve", "--backend", "onnx", str(tmp_path / "onnx")]) == 0
    (served,) = started["app"].extensions["peftqa_models"]
    assert served.backend == "onnxruntime fp32"
    # One model: every core this process may use (its affinity mask, e.g. `taskset -c 0`), not the machine's.
    assert served.run.model.session.get_session_options().intra_op_num_threads == len(os.sched_getaffinity(0))


def test_serve_fast_is_refused_where_bf16_is_emulated(run_dirs, monkeypatch, capsys):
    import peftqa.hardware

    monkeypatch.setattr(peftqa.hardware, "cpu_has_bf16", lambda: False)
    assert main(["serve", str(run_dirs["lora"]), "--fast"]) == 2
    err = capsys.readouterr().err
    assert "bf16 units" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--backend", "onnx", "--fast", "x"], "torch backend"),
        (["--fast", "--shared-base", "x"], "cannot go with --shared-base"),
    ],
)
def test_serve_refuses_flags_that_do_not_go_together(capsys, flags, fragment):
    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_says_so_in_one_line(capsys, run_dirs):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dirs["lora"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_python_app_py_is_peftqa_serve(tmp_path):
    import subprocess
    import sys

    app_py = Path(__file__).resolve().parents[1] / "app.py"
    completed = subprocess.run([sys.executable, str(app_py)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "make demo" in completed.stderr and "Traceback" not in completed.stderr
