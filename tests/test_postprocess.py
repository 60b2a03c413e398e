import numpy as np

from peftqa.data import Example
from peftqa.features.windows import build_features
from peftqa.inference.postprocess import best_answers, postprocess, rank_candidates, window_spans
from peftqa.model.backbone import load_tokenizer
from tests.helpers import TOKENIZER_DIR


def test_spans_never_come_from_outside_the_context():
    # Tokens 0-3 are question/special tokens (offsets -1) and carry the largest logits.
    offsets = np.array([[-1, -1], [-1, -1], [-1, -1], [-1, -1], [0, 5], [6, 8], [9, 14], [-1, -1]])
    start_logits = np.array([9.0, 9.0, 9.0, 9.0, 1.0, 0.5, 0.1, 9.0])
    end_logits = np.array([9.0, 9.0, 9.0, 9.0, 0.1, 0.5, 1.0, 9.0])
    spans = window_spans(start_logits, end_logits, offsets, n_best=20, max_answer_tokens=30)
    assert spans and all(start >= 0 and end <= 14 for _, start, end in spans)
    assert spans[0][1:] == (0, 14)


def test_end_before_start_and_too_long_spans_are_dropped():
    offsets = np.array([[i * 2, i * 2 + 1] for i in range(10)])
    start_logits = np.zeros(10)
    start_logits[8] = 5.0
    end_logits = np.zeros(10)
    end_logits[2] = 5.0
    spans = window_spans(start_logits, end_logits, offsets, n_best=20, max_answer_tokens=3)
    assert spans
    # Token i covers characters [2i, 2i+1): token 8 -> token 2 would be (16, 5); 3 tokens span <= 5 chars.
    assert all(start < end and end - start <= 5 for _, start, end in spans)
    assert (16, 5) not in [(start, end) for _, start, end in spans]


def test_rank_candidates_merges_duplicates_and_slices_the_original_text():
    context = "The Café de FLORE, Paris"
    ranked = rank_candidates(context, [(2.0, 4, 17), (3.0, 4, 17), (1.0, 19, 24)], n_best=20)
    assert [c.text for c in ranked] == ["Café de FLORE", "Paris"]
    assert ranked[0].logit_score == 3.0
    assert abs(sum(c.probability for c in ranked) - 1.0) < 1e-9


def test_postprocess_never_returns_question_text_whatever_the_logits():
    tokenizer = load_tokenizer(str(TOKENIZER_DIR))
    example = Example("e", "Which unusual question words appear here?", "Short context about cats.", ("cats",), (20,))
    features = build_features([example], tokenizer, 128, 32)
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = [rng.normal(size=int(n)) * 5 for n in features.lengths]
        ends = [rng.normal(size=int(n)) * 5 for n in features.lengths]
        answer = best_answers(postprocess([example], features, logits, ends, n_best=20, max_answer_tokens=30))["e"]
        assert answer and answer in example.context
        assert "question" not in answer.lower()


def test_null_score_is_the_lowest_cls_score_over_an_examples_windows_and_abstention_follows_the_threshold():
    from peftqa.inference.postprocess import abstains, null_differences, null_scores

    tokenizer = load_tokenizer(str(TOKENIZER_DIR))
    context = " ".join(f"word{i}" for i in range(120))
    example = Example("e", "Which word?", context, (), ())
    features = build_features([example], tokenizer, 128, 32)
    assert len(features) >= 2  # several windows
    rng = np.random.default_rng(1)
    starts = [rng.normal(size=int(n)) for n in features.lengths]
    ends = [rng.normal(size=int(n)) for n in features.lengths]
    nulls = null_scores([example], features, starts, ends)
    assert nulls["e"] == min(float(s[0] + e[0]) for s, e in zip(starts, ends, strict=True))
    candidates = postprocess([example], features, starts, ends, n_best=20, max_answer_tokens=30)
    difference = null_differences(candidates, nulls)["e"]
    assert difference == nulls["e"] - candidates["e"][0].logit_score
    spans = best_answers(candidates)
    # "No answer" exactly when null score - best span score > threshold.
    for threshold in (difference - 1e-6, difference, difference + 1e-6):
        answered = best_answers(candidates, {"e": difference}, threshold)["e"]
        assert (answered == "") is (difference > threshold) is abstains(difference, threshold)
        assert answered in ("", spans["e"])
    assert best_answers(candidates, {"e": difference}, None) == spans  # a model that always answers
