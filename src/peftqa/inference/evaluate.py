"""`evaluate` (forward passes -> post-process -> metrics) and `ask` (one question, one context).

Scoring batches are `batches.collate`'s: features of similar length (longest first), padded only to
their longest row. On data with unanswerable questions (SQuAD 2.0) `evaluate` also decides "no
answer" by a null threshold (`NullRule`: given, or chosen on held-out questions) and scores with the
official SQuAD 2.0 rules; on SQuAD v1.1 data it does exactly what it always did.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from peftqa.data import Example, eval_questions, fingerprint, gold_answers
from peftqa.features.cache import load_or_build_features
from peftqa.features.windows import FeatureSet, build_features
from peftqa.inference.forward import predict_logits
from peftqa.inference.postprocess import Candidate, abstains, best_answers, null_differences, null_scores, postprocess
from peftqa.scoring.metrics import compute_metrics, compute_metrics_v2, question_scores, question_scores_v2
from peftqa.scoring.stats import bootstrap_interval
from peftqa.settings.groups import DEFAULT_SCORING, ScoringSettings
from peftqa.settings.run_config import RunConfig


@dataclass
class EvalResult:
    """Scores and answers of one evaluation."""

    metrics: dict[str, Any]  # exact_match, f1, count, and their 95% intervals (exact_match_ci, f1_ci)
    loss: float  # mean loss over the features
    predictions: dict[str, str]  # question id -> best answer ("" where the model answers nothing)
    candidates: dict[str, list[Candidate]]  # question id -> n best
    scores: dict[str, dict[str, float]]  # question id -> its exact_match and f1: every figure's raw material
    seconds: float
    features_per_second: float
    # SQuAD 2.0 data only ({} otherwise): null_threshold, the official HasAns_* / NoAns_* / best_* figures
    # and intervals of HasAns_exact, HasAns_f1 and NoAns_exact.
    answerability: dict[str, Any] = field(default_factory=dict)
    null_differences: dict[str, float] = field(default_factory=dict)  # null score - best span score (2.0 only)
    null_scores: dict[str, float] = field(default_factory=dict)  # the lowest [CLS] start + end logit


@dataclass(frozen=True)
class NullRule:
    """How a model decides "no answer" on data with unanswerable questions (SQuAD 2.0).

    The threshold is the given one, else the one that scores best (F1, the official search) on
    `tune_examples` (held-out training questions), else on the scored questions themselves, which is
    only right when those are held-out training questions too (a sweep trial), never dev.
    """

    threshold: float | None = None
    tune_examples: list[Example] | None = None
    tune_features: FeatureSet | None = None


# The official breakdown kept in a run's metrics, and those given 95% intervals.
V2_FIGURES = (
    "HasAns_exact",
    "HasAns_f1",
    "HasAns_total",
    "NoAns_exact",
    "NoAns_f1",
    "NoAns_total",
    "best_exact",
    "best_exact_thresh",
    "best_f1",
    "best_f1_thresh",
)
_V2_INTERVALS = {
    "HasAns_exact": ("exact_match", True),
    "HasAns_f1": ("f1", True),
    "NoAns_exact": ("exact_match", False),
}


def run_questions(config: RunConfig, tokenizer: Any, data_dir: str | None = None) -> tuple[list[Example], FeatureSet]:
    """The questions a run is scored on (its split, sample and seed, from `config`) and their windows
    (the run's lengths; from the feature cache when there): what re-scoring a run or an export needs.

    Args:
        data_dir: where SQuAD is; None: the run's own setting.
    """
    examples, path = eval_questions(data_dir or config.data.data_dir, config.questions)
    role = "train" if config.data.eval_split == "validation" else "dev"
    features, _ = load_or_build_features(
        examples, tokenizer, config.scoring.max_length, config.scoring.doc_stride, fingerprint(path, role)
    )
    return examples, features


def evaluate(
    model,
    examples: list[Example],
    features: FeatureSet,
    pad_token_id: int,
    scoring: ScoringSettings = DEFAULT_SCORING,
    null: NullRule | None = None,
    progress: bool = False,
) -> EvalResult:
    """Predict every feature, post-process to one answer per question and score with EM/F1.

    `features` were built from `examples` with the windows of `scoring`; its batch size, n_best and
    answer length apply here. With `null` (a model trained on SQuAD 2.0 data) the model may answer
    nothing; the questions are scored by the SQuAD 2.0 rules whenever `null` is given or some of them
    have no answer, else exactly as SQuAD v1.1's script scores them.
    """
    began = time.perf_counter()
    start_logits, end_logits, loss = predict_logits(
        model, features, scoring.eval_batch_size, pad_token_id, progress=progress
    )
    candidates = postprocess(examples, features, start_logits, end_logits, scoring.n_best, scoring.max_answer_tokens)
    gold = gold_answers(examples)
    nulls = null_scores(examples, features, start_logits, end_logits)
    answerability: dict[str, Any] = {}
    differences: dict[str, float] = {}
    if null is None and all(gold.values()):
        predictions = best_answers(candidates)
        metrics: dict[str, Any] = compute_metrics(predictions, gold)
        scores = question_scores(predictions, gold)
    else:
        differences = null_differences(candidates, nulls)
        threshold = _null_threshold(model, pad_token_id, scoring, null, candidates, differences, gold)
        predictions = best_answers(candidates, differences, threshold)
        # The official script given every best span and the null differences as its na_probs, with the
        # threshold as its --na-prob-thresh: its exact and f1 are then those of `predictions`.
        spans = best_answers(candidates)
        cut = math.inf if threshold is None else threshold
        official = compute_metrics_v2(spans, gold, differences, cut)
        scores = question_scores_v2(spans, gold, differences, cut)
        metrics = {"exact_match": official["exact"], "f1": official["f1"], "count": official["total"]}
        answerability = {"null_threshold": threshold, **{k: _finite(official[k]) for k in V2_FIGURES if k in official}}
        for name, (metric, answerable) in _V2_INTERVALS.items():
            values = [scores[i][metric] for i, truths in gold.items() if bool(truths) is answerable]
            if values:
                answerability[f"{name}_ci"] = list(bootstrap_interval(values))
    for name in ("exact_match", "f1"):
        metrics[f"{name}_ci"] = list(bootstrap_interval([row[name] for row in scores.values()]))
    seconds = time.perf_counter() - began
    return EvalResult(
        metrics,
        loss,
        predictions,
        candidates,
        scores,
        seconds,
        len(features) / max(seconds, 1e-9),
        answerability,
        differences,
        nulls,
    )


def _finite(value: Any) -> Any:
    """JSON has no infinity: a threshold past every finite difference is written as None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _null_threshold(
    model,
    pad_token_id: int,
    scoring: ScoringSettings,
    null: NullRule | None,
    candidates: dict[str, list[Candidate]],
    differences: dict[str, float],
    gold: dict[str, list[str]],
) -> float | None:
    """The rule's threshold: given, else chosen on its tuning questions, else on these; None without a rule."""
    if null is None:
        return None
    if null.threshold is not None:
        return null.threshold
    if null.tune_examples is not None and null.tune_features is not None:
        tuned = evaluate(model, null.tune_examples, null.tune_features, pad_token_id, scoring, NullRule(math.inf))
        candidates, differences, gold = tuned.candidates, tuned.null_differences, gold_answers(null.tune_examples)
    return choose_null_threshold(candidates, differences, gold)


def choose_null_threshold(
    candidates: dict[str, list[Candidate]], differences: dict[str, float], gold: dict[str, list[str]]
) -> float:
    """The official best_f1_thresh on these questions: answer nothing where null - best span score exceeds it."""
    found = compute_metrics_v2(best_answers(candidates), gold, differences)["best_f1_thresh"]
    if math.isfinite(found):
        return float(found)
    # Best past every finite difference: questions with no span answer nothing whatever the threshold.
    return max((d for d in differences.values() if math.isfinite(d)), default=0.0)


@dataclass(frozen=True)
class Asked:
    """One question's answer over its whole context: the ranked spans, the null score and the run's threshold."""

    candidates: list[Candidate]
    null_score: float  # the lowest [CLS] start + end logit over the windows
    null_threshold: float | None  # None: a model that always answers (SQuAD v1.1)

    @property
    def no_answer(self) -> bool:
        """Whether the model answers nothing (no valid span, or the null score wins by the threshold)."""
        if not self.candidates:
            return True
        return abstains(self.null_score - self.candidates[0].logit_score, self.null_threshold)

    def to_dict(self) -> dict[str, Any]:
        """The answer as `peftqa predict` and the web API give it: the best span (or "" with no_answer), the
        null score beside the best span's score, and the other spans as alternatives."""
        best = self.candidates[0] if self.candidates else None
        shown = (
            best.to_dict() if best and not self.no_answer else {"answer": "", "start": None, "end": None, "score": None}
        )
        result: dict[str, Any] = {
            **shown,
            "no_answer": self.no_answer,
            "null_score": self.null_score,
            "span_score": best.logit_score if best else None,
            "null_threshold": self.null_threshold,
        }
        if best and self.no_answer:
            result["best_span"] = best.to_dict()
        result["alternatives"] = [candidate.to_dict() for candidate in self.candidates[1:]]
        return result


def ask(
    model,
    tokenizer,
    question: str,
    context: str,
    top_k: int = 1,
    scoring: ScoringSettings = DEFAULT_SCORING,
    bf16: bool = False,
    null_threshold: float | None = None,
) -> Asked:
    """The `top_k` best spans of one question over the whole context (sliding windows), and its null score."""
    example = Example("question", question, context, (), ())
    features = build_features([example], tokenizer, scoring.max_length, scoring.doc_stride)
    start_logits, end_logits, _ = predict_logits(model, features, scoring.eval_batch_size, tokenizer.pad_token_id, bf16)
    n_best = max(scoring.n_best, top_k)
    ranked = postprocess([example], features, start_logits, end_logits, n_best, scoring.max_answer_tokens)
    null = null_scores([example], features, start_logits, end_logits)[example.id]
    return Asked(ranked[example.id][:top_k], null, null_threshold)
