"""Logits -> answers. Pure numpy, no I/O: the one post-processor that evaluate, predict and the
web page all use.

A span is a (start token, end token) pair inside one window. The n best start and end logits of
every window of an example are paired, invalid pairs are dropped, and the answer text is sliced
from the original context by character offsets, so it keeps its casing and spacing.

Questions that may have no answer (SQuAD 2.0) are answered as SQuAD 2.0 defines it: a window's null
score is its [CLS] start + end logit (training points unanswerable windows there), an example's is the
lowest over its windows, and the model answers nothing when that null score exceeds the best span's
score by more than a threshold (`null_differences`, `best_answers`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peftqa.data import Example
from peftqa.features.windows import FeatureSet


@dataclass(frozen=True)
class Candidate:
    """One possible answer: text sliced from the context, its character span and its scores."""

    text: str
    start: int  # character offset in the context
    end: int  # exclusive
    logit_score: float  # start logit + end logit
    probability: float = 0.0  # softmax of logit_score over the example's n best

    def to_dict(self) -> dict[str, object]:
        """The answer as `peftqa predict` and the web API give it."""
        return {"answer": self.text, "start": self.start, "end": self.end, "score": self.probability}


def window_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
    n_best: int,
    max_answer_tokens: int,
) -> list[tuple[float, int, int]]:
    """Valid (score, start_char, end_char) spans of one window, best first.

    `offsets` is (n_tokens, 2) with (-1, -1) outside the context.
    """
    in_context = offsets[:, 0] >= 0
    # Only context tokens may start or end an answer: question tokens, CLS, SEP and padding never.
    masked_start = np.where(in_context, start_logits, -np.inf)
    masked_end = np.where(in_context, end_logits, -np.inf)
    top = min(n_best, int(in_context.sum()))
    if top == 0:
        return []
    start_indexes = np.argsort(masked_start)[::-1][:top]
    end_indexes = np.argsort(masked_end)[::-1][:top]
    starts, ends = start_indexes[:, None], end_indexes[None, :]
    # An answer cannot end before it starts, nor be longer than a SQuAD answer can be.
    valid = (ends >= starts) & (ends - starts + 1 <= max_answer_tokens)
    scores = masked_start[starts] + masked_end[ends]
    pairs = np.flatnonzero(valid.ravel())
    best = pairs[np.argsort(-scores.ravel()[pairs], kind="stable")][:n_best]
    rows, cols = np.unravel_index(best, valid.shape)
    return [
        (float(scores[r, c]), int(offsets[start_indexes[r], 0]), int(offsets[end_indexes[c], 1]))
        for r, c in zip(rows, cols, strict=True)
    ]


def group_by_example(features: FeatureSet) -> dict[int, list[int]]:
    """example index -> the feature rows (windows) that belong to it."""
    groups: dict[int, list[int]] = defaultdict(list)
    for row, example_index in enumerate(features.example_index):
        groups[int(example_index)].append(row)
    return groups


def rank_candidates(
    context: str,
    spans: list[tuple[float, int, int]],
    n_best: int,
) -> list[Candidate]:
    """Distinct answers from spans of all windows, best first, with softmax probabilities."""
    best_by_span: dict[tuple[int, int], float] = {}
    for score, start, end in spans:
        # Overlapping windows propose the same characters twice: keep the better score.
        if score > best_by_span.get((start, end), -np.inf):
            best_by_span[(start, end)] = score
    ranked = sorted(best_by_span.items(), key=lambda item: item[1], reverse=True)[:n_best]
    if not ranked:
        return []
    scores = np.array([score for _, score in ranked])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    return [
        Candidate(context[start:end], start, end, float(score), float(p))
        for ((start, end), score), p in zip(ranked, probabilities, strict=True)
    ]


def postprocess(
    examples: Sequence[Example],
    features: FeatureSet,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best: int,
    max_answer_tokens: int,
) -> dict[str, list[Candidate]]:
    """question id -> its candidates, best first ([] when no valid span exists).

    Args:
        examples: the questions the features were built from.
        features: their windows; `features.example_index` points into `examples`.
        start_logits, end_logits: one array per feature row, as long as that row.
    """
    if not (len(start_logits) == len(end_logits) == len(features)):
        raise ValueError(f"{len(start_logits)} start and {len(end_logits)} end logit rows for {len(features)} features")
    candidates: dict[str, list[Candidate]] = {example.id: [] for example in examples}
    for example_index, rows in group_by_example(features).items():
        spans = []
        for row in rows:
            spans.extend(
                window_spans(start_logits[row], end_logits[row], features.row_offsets(row), n_best, max_answer_tokens)
            )
        example = examples[example_index]
        candidates[example.id] = rank_candidates(example.context, spans, n_best)
    return candidates


def null_scores(
    examples: Sequence[Example],
    features: FeatureSet,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
) -> dict[str, float]:
    """question id -> its null score: the lowest [CLS] (token 0) start + end logit over its windows.

    The lowest, as in BERT's SQuAD 2.0 recipe: the window least sure there is no answer speaks for the example.
    """
    scores = {example.id: float("inf") for example in examples}
    for example_index, rows in group_by_example(features).items():
        question_id = examples[example_index].id
        scores[question_id] = min(float(start_logits[row][0] + end_logits[row][0]) for row in rows)
    return scores


def null_differences(candidates: dict[str, list[Candidate]], nulls: dict[str, float]) -> dict[str, float]:
    """question id -> null score minus the best span's score: how strongly the model says "no answer"
    (the official script's na_prob); +inf for a question without any valid span."""
    return {
        question_id: (nulls[question_id] - ranked[0].logit_score) if ranked else float("inf")
        for question_id, ranked in candidates.items()
    }


def abstains(difference: float, threshold: float | None) -> bool:
    """Whether the model answers nothing: the null score exceeds the best span's by more than `threshold`
    (None: a model that always answers, as on SQuAD v1.1)."""
    return difference == float("inf") or (threshold is not None and difference > threshold)


def best_answers(
    candidates: dict[str, list[Candidate]],
    differences: dict[str, float] | None = None,
    threshold: float | None = None,
) -> dict[str, str]:
    """question id -> best answer text ("" when there is none), the official predictions format.

    With `differences` (`null_differences`) and a `threshold`, "" also where the model abstains.
    """
    return {
        question_id: (
            ""
            if not ranked or (differences is not None and abstains(differences[question_id], threshold))
            else ranked[0].text
        )
        for question_id, ranked in candidates.items()
    }
