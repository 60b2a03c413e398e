"""SQuAD Exact Match and F1, as in the official scripts (no download at run time): evaluate-v1.1.py
(`compute_metrics`) and, for data with unanswerable questions, evaluate-v2.0.py (`compute_metrics_v2`,
with its breakdown into answerable and unanswerable questions and its best-threshold search)."""

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
    (`peftqa.scoring.stats`) can resample the questions.
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


# ---------------------------------------------------------------------------- SQuAD 2.0
# evaluate-v2.0.py differs from v1.1 in three ways: a gold answer that normalises to nothing is dropped
# (a question left with none has the single gold answer ""), F1 of an empty prediction or gold is 1
# exactly when both are empty, and a question counts as answerable when its answer list is not empty.


def f1_v2(prediction: str, truth: str) -> float:
    """evaluate-v2.0.py's compute_f1: `f1`, except that an empty side scores 1 when both are empty."""
    predicted_tokens = normalize_answer(prediction).split()
    true_tokens = normalize_answer(truth).split()
    if not predicted_tokens or not true_tokens:
        return float(predicted_tokens == true_tokens)
    return f1(prediction, truth)


def _scores_v2(
    predictions: Mapping[str, str],
    gold_answers: Mapping[str, list[str]],
    na_probs: Mapping[str, float] | None,
    na_prob_thresh: float,
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float]]:
    """evaluate-v2.0.py's get_raw_scores and apply_no_ans_threshold: (exact, f1) after the threshold and
    (exact, f1) before it, 0..1 per question in `gold_answers`' order. Where na_probs exceeds the
    threshold the question is answered "no answer": 1 when it has none, else 0."""
    exact_raw, f1_raw, exact, f1_scores = {}, {}, {}, {}
    for question_id, truths in gold_answers.items():
        prediction = predictions.get(question_id, "")
        golds = [truth for truth in truths if normalize_answer(truth)] or [""]
        exact_raw[question_id] = max(exact_match(prediction, truth) for truth in golds)
        f1_raw[question_id] = max(f1_v2(prediction, truth) for truth in golds)
        if na_probs is not None and na_probs.get(question_id, 0.0) > na_prob_thresh:
            exact[question_id] = f1_scores[question_id] = float(not truths)
        else:
            exact[question_id], f1_scores[question_id] = exact_raw[question_id], f1_raw[question_id]
    return exact, f1_scores, exact_raw, f1_raw


def question_scores_v2(
    predictions: Mapping[str, str],
    gold_answers: Mapping[str, list[str]],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Per question id (in the order of `gold_answers`): its SQuAD 2.0 exact_match and f1 (x100), whose
    means are `compute_metrics_v2`'s exact and f1 (same arguments).

    A question with no gold answer scores 100 exactly when the prediction is empty. A question without
    a prediction is scored as the empty answer: 0 when it has an answer (as in v1.1), 100 when it has none.
    """
    exact, f1_scores, _, _ = _scores_v2(predictions, gold_answers, na_probs, na_prob_thresh)
    return {i: {"exact_match": 100.0 * exact[i], "f1": 100.0 * f1_scores[i]} for i in gold_answers}


def _eval_dict(exact: Mapping[str, float], f1_scores: Mapping[str, float], ids: list[str]) -> dict[str, float]:
    # Sums of 0..1 scores scaled once at the end, in the official order, so the numbers are bit-identical.
    total = len(ids)
    return {
        "exact": 100.0 * sum(exact[i] for i in ids) / total,
        "f1": 100.0 * sum(f1_scores[i] for i in ids) / total,
        "total": total,
    }


def best_threshold(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: (best score x100, its threshold).

    Answering "no answer" where `na_probs` exceeds the threshold, the threshold among the na_probs that
    scores best (the first such in increasing order); scores: each question's 0..1 score when answered.
    """
    score = best = float(sum(not answerable for answerable in has_answer.values()))
    threshold = 0.0
    for question_id in sorted(na_probs, key=lambda k: na_probs[k]):
        if question_id not in scores:
            continue
        if has_answer[question_id]:
            score += scores[question_id]
        elif predictions.get(question_id):
            score -= 1
        if score > best:
            best, threshold = score, na_probs[question_id]
    return 100.0 * best / len(scores), threshold


def compute_metrics_v2(
    predictions: Mapping[str, str],
    gold_answers: Mapping[str, list[str]],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """The dict evaluate-v2.0.py prints: exact, f1, total, then HasAns_* and NoAns_* (where there are such
    questions) and, with `na_probs`, best_exact / best_exact_thresh / best_f1 / best_f1_thresh.

    Args:
        predictions: question id -> answer text ("" for no answer); a missing one counts as "".
        gold_answers: question id -> its gold answers ([] for a question without an answer).
        na_probs: question id -> how strongly the model says "no answer" (the official --na-prob-file;
            peftqa uses null score minus best span score); None: 0 for every question.
        na_prob_thresh: "no answer" where na_probs exceeds it (the official --na-prob-thresh).
    """
    if not gold_answers:
        return {"exact": 0.0, "f1": 0.0, "total": 0}
    has_answer = {question_id: bool(truths) for question_id, truths in gold_answers.items()}
    exact, f1_scores, exact_raw, f1_raw = _scores_v2(predictions, gold_answers, na_probs, na_prob_thresh)
    result = _eval_dict(exact, f1_scores, list(exact))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [question_id for question_id, answerable in has_answer.items() if answerable is wanted]
        if ids:
            result.update({f"{prefix}_{key}": value for key, value in _eval_dict(exact, f1_scores, ids).items()})
    if na_probs is not None:
        # The official order (sorted na_probs, ties in their own order); a question without one has 0.
        filled = {**dict(na_probs), **{i: 0.0 for i in gold_answers if i not in na_probs}}
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, threshold = best_threshold(predictions, raw, filled, has_answer)
            result[f"best_{name}"], result[f"best_{name}_thresh"] = best, threshold
    return result
