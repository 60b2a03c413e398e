"""POST /api/predict with hostile JSON bodies: any JSON value, a good body with a hostile value in any
field (deep nesting, 5,000-digit numbers, lone surrogates, NaN, wrong types), and raw text. The answer
is 200 or 4xx, always a JSON object a strict JSON reader takes (no NaN), never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import HOSTILE_JSON, json_paths, json_values, raw_json, replaced_json

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CONTEXT = "Pride and Prejudice was written by Jane Austen and published in 1813 by Thomas Egerton."
GOOD = {"context": CONTEXT, "question": "Who wrote it?", "answers": ["Jane Austen"], "top_k": 2, "no_answer": False}


@pytest.fixture(scope="module")
def client(tiny_lora_run):
    from peftqa.serve import create_app
    from peftqa.serve.loading import load_models

    return create_app({"TESTING": True, "MODELS": load_models([tiny_lora_run])}).test_client()


def _strict(text: str):
    """JSON as a browser reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in a response")

    return json.loads(text, parse_constant=refuse)


def _check(response) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.status_code
    payload = _strict(response.get_data(as_text=True))
    assert isinstance(payload, dict)
    if response.status_code == 200:
        assert isinstance(payload["models"], list)
    else:
        assert isinstance(payload["error"], str)


def _post(client, text: str):
    return client.post("/api/predict", data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


@FUZZ
@given(where=st.sampled_from(list(json_paths(GOOD))), raw=raw_json)
def test_a_good_body_with_a_hostile_value_anywhere(client, where, raw):
    _check(_post(client, replaced_json(GOOD, where, raw)))


@FUZZ
@given(body=json_values)
def test_any_json_value(client, body):
    _check(_post(client, json.dumps(body)))


@pytest.mark.parametrize("raw", HOSTILE_JSON[:4])
def test_deep_nesting_and_huge_numbers_are_400(client, raw):
    response = _post(client, raw)
    assert response.status_code == 400 and "error" in _strict(response.get_data(as_text=True))
    response = _post(client, replaced_json(GOOD, ("top_k",), raw))
    assert response.status_code == 400


def test_fifty_thousand_nested_brackets_are_a_400_json_error(client):
    response = _post(client, '{"context": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert response.status_code == 400 and response.get_json() == {"error": "the request body is not valid JSON"}


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes(client, raw):
    _check(client.post("/api/predict", data=raw, content_type="application/json"))
