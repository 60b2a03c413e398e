"""features.windows: windows over long contexts, their labels and offsets, and the fast path (each context
tokenised once) equal to tokenising every pair."""

import numpy as np
import pytest

from peftqa.data import Example
from peftqa.features import windows
from peftqa.features.windows import build_features, pair_template, window_starts
from peftqa.model.backbone import load_tokenizer
from tests.helpers import TOKENIZER_DIR, assert_same_features, example_of, window_examples


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER_DIR))


def _labelled_texts(features, example) -> list[str]:
    """The answer text each window's label points at ('' for CLS)."""
    texts = []
    for row in range(len(features)):
        start, end = features.start_positions[row], features.end_positions[row]
        offsets = features.row_offsets(row)
        texts.append("" if start == 0 else example.context[offsets[start, 0] : offsets[end, 1]])
    return texts


def test_answer_in_a_later_window_is_labelled_only_where_it_fits(tokenizer):
    filler = " ".join(f"word{i}" for i in range(150))
    context = f"{filler} The treasure is buried under the old oak tree. {filler}"
    example = example_of(context, "the old oak tree")
    features = build_features([example], tokenizer, max_length=128, doc_stride=32)
    assert len(features) > 3
    texts = _labelled_texts(features, example)
    assert texts[0] == ""  # the first window holds no answer: CLS label
    assert "the old oak tree" in texts
    assert set(texts) <= {"", "the old oak tree"}


def test_answer_cut_by_a_window_edge_gets_the_cls_label(tokenizer):
    context = " ".join(f"w{i}" for i in range(400))
    for answer_words in range(1, 4):
        for first in range(40, 80):
            answer = " ".join(f"w{i}" for i in range(first, first + answer_words))
            example = example_of(context, " " + answer + " ")
            example = Example("x", "q?", context, (answer,), (example.answer_starts[0] + 1,))
            features = build_features([example], tokenizer, max_length=128, doc_stride=32)
            for row, text in enumerate(_labelled_texts(features, example)):
                offsets = features.row_offsets(row)
                context_offsets = offsets[offsets[:, 0] >= 0]
                window_holds_answer = context_offsets[0, 0] <= example.answer_starts[0] and context_offsets[
                    -1, 1
                ] >= example.answer_starts[0] + len(answer)
                assert text == (answer if window_holds_answer else "")


def test_accents_and_non_ascii_keep_exact_character_offsets(tokenizer):
    context = "Le café de Flore à Paris accueillit Jean-Paul Sartre et Simone de Beauvoir — souvent."
    for answer in ("café de Flore", "Paris", "Simone de Beauvoir", "Jean-Paul Sartre"):
        example = example_of(context, answer)
        features = build_features([example], tokenizer, max_length=128, doc_stride=32)
        assert _labelled_texts(features, example) == [answer]


def test_offsets_outside_the_context_are_masked(tokenizer):
    example = example_of("Paris is the capital of France.", "Paris", question="What is the capital?")
    features = build_features([example], tokenizer, max_length=128, doc_stride=32)
    offsets = features.row_offsets(0)
    ids = features.input_ids[features.row(0)]
    sep = np.flatnonzero(ids == tokenizer.sep_token_id)
    assert (offsets[: sep[0] + 1] == -1).all()  # CLS, question and first SEP
    assert (offsets[-1] == -1).all()  # last SEP
    assert (offsets[sep[0] + 1 : -1] >= 0).all()


def test_very_long_questions_are_shortened_not_fatal(tokenizer):
    question = "why " * 500
    example = example_of("Because it rains a lot in the autumn.", "it rains", question=question)
    features = build_features([example], tokenizer, max_length=128, doc_stride=32)
    assert _labelled_texts(features, example) == ["it rains"]


@pytest.mark.parametrize(("max_length", "stride"), [(128, 32), (160, 64), (384, 128)])
def test_windowed_fast_path_equals_tokenising_every_pair(tokenizer, max_length, stride):
    examples = window_examples()
    assert pair_template(tokenizer) is not None  # the fast path is the one under test
    fast = build_features(examples, tokenizer, max_length, stride)
    assert_same_features(fast, build_features(examples, tokenizer, max_length, stride, pairwise=True))
    assert len(fast) > len(examples)  # several windows per long context


def test_chunks_and_fallback_give_the_same_features(tokenizer, monkeypatch):
    examples = window_examples()
    expected = build_features(examples, tokenizer, 128, 32, pairwise=True)
    assert_same_features(build_features(examples, tokenizer, 128, 32, chunk_size=3), expected)
    assert_same_features(build_features(examples, tokenizer, 128, 32, chunk_size=3, pairwise=True), expected)
    # A tokenizer whose pair layout cannot be reproduced falls back to the pair path.
    monkeypatch.setattr(windows, "pair_template", lambda tokenizer: None)
    assert_same_features(build_features(examples, tokenizer, 128, 32, chunk_size=3), expected)


def test_window_starts_cover_the_context_like_the_tokenizer():
    assert list(window_starts(10, 20, 5)) == [0]
    assert list(window_starts(20, 20, 5)) == [0]
    assert list(window_starts(21, 20, 5)) == [0, 15]
    assert list(window_starts(50, 20, 5)) == [0, 15, 30]
    assert list(window_starts(51, 20, 5)) == [0, 15, 30, 45]
