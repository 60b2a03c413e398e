"""The app (`create_app`) and its compare blueprint, through Flask's test client: every route, every
refusal, the page, threads, fuzzing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftqa.data import load_examples
from peftqa.inference import run_folder
from peftqa.serve import create_app
from peftqa.serve.loading import load_models
from peftqa.serve.served import ServedModel
from tests.helpers import CONTEXT, QUESTION, TOKENIZER_DIR, PointAtWord, runs_of_every_method, train_abstaining_run


@pytest.fixture(scope="module")
def run_dirs(tiny_bert_dir, squad_dir, tmp_path_factory) -> dict[str, Path]:
    return runs_of_every_method(tiny_bert_dir, squad_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def client(run_dirs):
    """The page as served by default: each run merged into its own fp32 weights."""
    models = load_models([run_dirs["lora"], run_dirs["ia3"]])
    return create_app({"TESTING": True, "MODELS": models}).test_client()


def _predict(client, **body):
    return client.post("/api/predict", json={"context": CONTEXT, "question": QUESTION, **body})


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


def test_answer_far_beyond_the_first_window_is_found():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    context = "The river runs through the old town. " * 400 + "A zebra lives here."
    settings_ = {"config": {"method": "lora", "model": "stub", "max_length": 128, "doc_stride": 32}}
    stub = run_folder.LoadedRun(
        Path("stub"), settings_, {}, PointAtWord(tokenizer.convert_tokens_to_ids("zebra")), tokenizer
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
    from peftqa.serve.compare_page import EXCERPT_AFTER, EXCERPT_BEFORE, excerpt

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


# --- questions that may have no answer (SQuAD 2.0) --------------------------------------------


@pytest.fixture(scope="module")
def v2_client(tiny_bert_dir, run_dirs, tmp_path_factory):
    """A run that answers nothing (SQuAD 2.0 data, its threshold below every difference) beside a v1.1 run."""
    abstaining = train_abstaining_run(tiny_bert_dir, tmp_path_factory.mktemp("v2-serve"))
    return create_app({"TESTING": True, "MODELS": load_models([abstaining, run_dirs["lora"]])}).test_client()


def test_a_run_that_abstains_says_no_answer_beside_the_null_and_best_span_scores(v2_client):
    body = _predict(v2_client, no_answer=True).get_json()
    abstaining, answering = body["models"]
    assert (abstaining["answer"], abstaining["no_answer"], abstaining["start"]) == ("", True, None)
    assert abstaining["null_score"] - abstaining["span_score"] > abstaining["null_threshold"] == -1e9
    assert abstaining["best_span"]["answer"] in CONTEXT
    # The true answer is "no answer": 100 exactly for the empty answer (SQuAD 2.0).
    assert (abstaining["exact_match"], abstaining["f1"]) == (100.0, 100.0)
    assert answering["no_answer"] is False and answering["answer"] and answering["null_threshold"] is None
    assert (answering["exact_match"], answering["f1"]) == (0.0, 0.0) and body["better"] == abstaining["name"]
    described = v2_client.get("/api/models").get_json()["models"]
    assert [m["null_threshold"] for m in described] == [-1e9, None]


def test_the_page_shows_no_answer_and_keeps_the_checkbox(v2_client):
    form = {"context": CONTEXT, "question": QUESTION, "no_answer": "on"}
    page = v2_client.post("/", data=form).get_data(as_text=True)
    assert "<em>no answer</em>" in page and 'name="no_answer" checked' in page
    assert "Null / best span score" in page and 'class="score">100 / 100.0' in page


def test_no_answer_must_be_a_boolean_and_excludes_true_answers(v2_client):
    assert "'no_answer' must be true or false" in _predict(v2_client, no_answer="yes").get_json()["error"]
    refused = _predict(v2_client, no_answer=True, answers=["Jane Austen"])
    assert refused.status_code == 400 and "leave 'answers' empty" in refused.get_json()["error"]


# --- the verdict compares every score it shows ------------------------------------------------


class _Scored:
    """A served model that answers with a fixed F1 and EM: the verdict logic without a model."""

    def __init__(self, name: str, f1: float, exact_match: float) -> None:
        self.name, self.f1, self.exact_match = name, f1, exact_match

    def describe(self) -> dict:
        figures = ("trainable_params", "total_params", "trainable_percent", "dev_exact_match", "dev_f1")
        missing = dict.fromkeys((*figures, "dev_questions", "null_threshold"))
        return {"name": self.name, "method": "lora", "backbone": "b", "backend": "fake", **missing, "run_dir": "r"}

    def answer(self, question, context, top_k, truths=(), no_answer=False) -> dict:
        return {
            "name": self.name, "method": "lora", "answer": "Jane", "start": 0, "end": 4, "score": 1.0,
            "no_answer": False, "null_score": 0.0, "span_score": 1.0, "null_threshold": None, "alternatives": [],
            "latency_ms": 1.0, "exact_match": self.exact_match, "f1": self.f1,
        }  # fmt: skip


@pytest.mark.parametrize(
    ("scores", "better", "best", "verdict"),
    [
        ([(100.0, 100.0), (100.0, 100.0), (44.4, 0.0)], None, ["a", "b"], "<strong>a</strong> and <strong>b</strong>"),
        ([(100.0, 100.0), (44.4, 0.0), (44.4, 0.0)], "a", ["a"], "<strong>a</strong> did better"),
        ([(50.0, 0.0), (50.0, 0.0), (50.0, 0.0)], None, [], "The models scored the same on this question."),
        ([(50.0, 0.0), (50.0, 100.0)], "b", ["b"], "<strong>b</strong> did better"),  # F1 tied: EM decides
    ],
)
def test_the_verdict_compares_every_score_shown(scores, better, best, verdict):
    models = [_Scored(name, f1, em) for name, (f1, em) in zip("abc", scores, strict=False)]
    client = create_app({"TESTING": True, "MODELS": models}).test_client()
    body = client.post("/api/predict", json={"context": CONTEXT, "question": QUESTION, "answers": ["Jane"]}).get_json()
    assert (body["better"], body["best"]) == (better, best)
    page = client.post("/", data={"context": CONTEXT, "question": QUESTION, "answers": "Jane"}).get_data(as_text=True)
    assert verdict in page and (best == [] or "same on this question" not in page)
    assert page.count('<span class="badge">better</span>') == len(best)


def test_a_figure_of_the_wrong_type_shows_as_missing_and_the_page_renders(tiny_lora_run):
    served = load_models([tiny_lora_run])[0]
    served.run.metrics = {**served.run.metrics, "f1": "high", "exact_match": float("nan"), "trainable_params": "x"}
    client = create_app({"TESTING": True, "MODELS": [served]}).test_client()
    assert client.get("/").status_code == 200
    described = client.get("/api/models").get_json()["models"][0]
    assert (described["dev_f1"], described["dev_exact_match"], described["trainable_params"]) == (None, None, None)
