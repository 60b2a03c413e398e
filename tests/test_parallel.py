"""The fast paths give the same results as the plain ones.

- Tokenisation: the windowed fast path (each context tokenised once) builds exactly the FeatureSet
  that tokenising every (question, context) pair with the tokenizer's own truncation builds.
- Data-parallel training: two CPU processes (gloo) with the same global batch end with the same
  trainable weights as one process, within atol 1e-5 (float sums are reordered by the all-reduce).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from peftqa import features as features_module
from peftqa.backbone import load_tokenizer
from peftqa.data import Example
from peftqa.features import FeatureSet, build_features, pair_template, window_starts
from tests.conftest import TOKENIZER_DIR


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER_DIR))


def _examples() -> list[Example]:
    """Short and long contexts, shared contexts, a very long question, no answer, accents."""
    filler = " ".join(
        f"Sentence number {i} talks about the château of Émile, (built in {1700 + i})." for i in range(40)
    )
    long_context = f"{filler} The treasure lies under the old oak tree. {filler}"
    short_context = "Pride and Prejudice was written by Jane Austen and published in 1813."
    long_question = "Which " + " ".join(f"very{i}" for i in range(80)) + " tree?"

    def example(qid: str, question: str, context: str, answer: str | None) -> Example:
        if answer is None:
            return Example(qid, question, context, (), ())
        return Example(qid, question, context, (answer,), (context.index(answer),))

    return [
        example("a", "Where is the treasure?", long_context, "the old oak tree"),
        example("b", "   Who built the château?", long_context, "Émile"),
        example("c", long_question, long_context, "oak"),
        example("d", "Who wrote it?", short_context, "Jane Austen"),
        example("e", "When?", short_context, "1813"),
        example("f", "What is asked at prediction time?", long_context, None),
        example("g", "When was number 39 built?", long_context, "1739"),
    ]


def _pairs_path(examples: list[Example], tokenizer, max_length: int, stride: int) -> FeatureSet:
    return features_module._build_chunk(examples, 0, tokenizer, max_length, stride)


def _assert_same(left: FeatureSet, right: FeatureSet) -> None:
    for field in dataclasses.fields(FeatureSet):
        a, b = getattr(left, field.name), getattr(right, field.name)
        assert (a is None) == (b is None), field.name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), field.name


@pytest.mark.parametrize(("max_length", "stride"), [(128, 32), (160, 64), (384, 128)])
def test_windowed_fast_path_equals_tokenising_every_pair(tokenizer, max_length, stride):
    examples = _examples()
    assert pair_template(tokenizer) is not None  # the fast path is the one under test
    fast = build_features(examples, tokenizer, max_length, stride)
    _assert_same(fast, _pairs_path(examples, tokenizer, max_length, stride))
    assert len(fast) > len(examples)  # several windows per long context


def test_chunks_and_fallback_give_the_same_features(tokenizer, monkeypatch):
    examples = _examples()
    expected = _pairs_path(examples, tokenizer, 128, 32)
    monkeypatch.setattr(features_module, "_TOKENIZE_CHUNK", 3)
    _assert_same(build_features(examples, tokenizer, 128, 32), expected)
    # A tokenizer whose pair layout cannot be reproduced falls back to the pair path.
    monkeypatch.setattr(features_module, "pair_template", lambda tokenizer: None)
    _assert_same(build_features(examples, tokenizer, 128, 32), expected)


def test_window_starts_cover_the_context_like_the_tokenizer():
    assert list(window_starts(10, 20, 5)) == [0]
    assert list(window_starts(20, 20, 5)) == [0]
    assert list(window_starts(21, 20, 5)) == [0, 15]
    assert list(window_starts(50, 20, 5)) == [0, 15, 30]
    assert list(window_starts(51, 20, 5)) == [0, 15, 30, 45]
