"""SQuAD v1.1 Exact Match and F1, as in the official evaluate-v1.1.py (no download at run time)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, fold white space (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    """Token F1 with multiset overlap: a token counts as often as it appears in both."""
    predicted_tokens = normalize_answer(prediction).split()
    true_tokens = normalize_answer(truth).split()
    common = Counter(predicted_tokens) & Counter(true_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(metric, prediction: str, truths: Iterable[str]) -> float:
    """The official rule: score against every gold answer and keep the best."""
    return max((metric(prediction, truth) for truth in truths), default=0.0)


def score_answer(prediction: str, truths: Iterable[str]) -> dict[str, float]:
    """EM and F1 (x100) of one prediction against all of its gold answers."""
    truths = list(truths)
    return {
        "exact_match": 100.0 * best_over_answers(exact_match, prediction, truths),
        "f1": 100.0 * best_over_answers(f1, prediction, truths),
    }


def _question_fractions(
    predictions: Mapping[str, str], gold_answers: Mapping[str, list[str]]
) -> Iterator[tuple[str, float, float]]:
    """(question id, EM, F1) in 0..1 for each question of `gold_answers`, in its order; unanswered: 0, 0."""
    for question_id, truths in gold_answers.items():
        prediction = predictions.get(question_id)
        if prediction is None:
            yield question_id, 0.0, 0.0
            continue
        yield question_id, best_over_answers(exact_match, prediction, truths), best_over_answers(f1, prediction, truths)


def question_scores(
    predictions: Mapping[str, str], gold_answers: Mapping[str, list[str]]
) -> dict[str, dict[str, float]]:
    """Per question id (in the order of `gold_answers`): its exact_match and f1 (x100); unanswered scores 0.

    The mean of these is `compute_metrics`; kept per question so that confidence intervals
    (`peftqa.stats`) can resample the questions.
    """
    return {
        question_id: {"exact_match": 100.0 * em, "f1": 100.0 * f1_score}
        for question_id, em, f1_score in _question_fractions(predictions, gold_answers)
    }


def compute_metrics(predictions: Mapping[str, str], gold_answers: Mapping[str, list[str]]) -> dict[str, float]:
    """Mean EM and F1 (x100) over the questions in `gold_answers`; an unanswered question scores 0.

    Args:
        predictions: question id -> predicted answer text.
        gold_answers: question id -> every gold answer text of that question.
    """
    if not gold_answers:
        return {"exact_match": 0.0, "f1": 0.0, "count": 0}
    total_em = total_f1 = 0.0
    # Sum the 0..1 scores and scale once at the end, as the official script does, so the printed
    # numbers stay bit-identical to it (summing x100 scores can differ in the last digit).
    for _, em, f1_score in _question_fractions(predictions, gold_answers):
        total_em += em
        total_f1 += f1_score
    count = len(gold_answers)
    return {"exact_match": 100.0 * total_em / count, "f1": 100.0 * total_f1 / count, "count": count}
