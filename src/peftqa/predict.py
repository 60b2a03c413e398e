"""Forward passes over features -> logits, and `evaluate` (predict -> post-process -> metrics).

Scoring batches are `batches.collate`'s: features of similar length (longest first), padded only to
their longest row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from peftqa.batches import collate
from peftqa.config import DEFAULT_SCORING, RunConfig, ScoringSettings
from peftqa.data import Example, eval_questions, gold_answers, md5_of
from peftqa.feature_cache import load_or_build_features
from peftqa.features import FeatureSet, build_features
from peftqa.metrics import compute_metrics, question_scores
from peftqa.postprocess import Candidate, best_answers, postprocess
from peftqa.stats import bootstrap_interval


def autocast_for(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on `device` when `bf16`, else plain fp32 (evaluation's default, on every device,
    so that scores compare across machines)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def eval_batch_size_for(device: torch.device) -> int:
    """Features per forward pass when scoring, unless the run says otherwise.

    A GPU wants large batches; a CPU is faster with small ones that stay in its caches (README, *Results*).
    """
    return 64 if device.type == "cuda" else 16


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    attention_mask: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """Mean of the start and end cross-entropies over the real tokens of each row.

    The models' own QA loss also gives probability to padding positions, so the scored loss would
    change with how rows are batched (a CPU scores in batches of 16, a GPU of 64); here it does not.
    """
    padding = attention_mask == 0
    start = torch.nn.functional.cross_entropy(start_logits.masked_fill(padding, float("-inf")), start_positions)
    end = torch.nn.functional.cross_entropy(end_logits.masked_fill(padding, float("-inf")), end_positions)
    return (start + end) / 2


@torch.inference_mode()
def predict_logits(
    model, features: FeatureSet, batch_size: int | None, pad_token_id: int, bf16: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Start and end logits per feature row (each as long as its row) and the mean loss.

    `batch_size` None: eval_batch_size_for the model's device; `bf16`: see autocast_for.
    """
    model.eval()
    device = model_device(model)
    batch_size = batch_size or eval_batch_size_for(device)
    # Longest first: similar lengths share a batch, and the largest batch shows memory problems early.
    order = np.argsort(-features.lengths, kind="stable")
    start_logits: list[np.ndarray | None] = [None] * len(features)
    end_logits: list[np.ndarray | None] = [None] * len(features)
    total_loss, seen = 0.0, 0
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        batch = collate(features, rows, pad_token_id, device)
        labels = (batch.pop("start_positions"), batch.pop("end_positions"))
        with autocast_for(device, bf16):
            output = model(**batch)
        start_batch, end_batch = output.start_logits.float(), output.end_logits.float()
        total_loss += float(span_loss(start_batch, end_batch, batch["attention_mask"], *labels)) * len(rows)
        seen += len(rows)
        starts = start_batch.cpu().numpy()
        ends = end_batch.cpu().numpy()
        for i, row in enumerate(rows):
            length = int(features.lengths[row])
            start_logits[row] = starts[i, :length]
            end_logits[row] = ends[i, :length]
    # Every row was filled: `order` is a permutation of the rows.
    return cast(list[np.ndarray], start_logits), cast(list[np.ndarray], end_logits), total_loss / max(seen, 1)


@dataclass
class EvalResult:
    """Scores and answers of one evaluation."""

    metrics: dict[str, Any]  # exact_match, f1, count, and their 95% intervals (exact_match_ci, f1_ci)
    loss: float  # mean loss over the features
    predictions: dict[str, str]  # question id -> best answer
    candidates: dict[str, list[Candidate]]  # question id -> n best
    scores: dict[str, dict[str, float]]  # question id -> its exact_match and f1: every figure's raw material
    seconds: float
    features_per_second: float


def run_questions(config: RunConfig, tokenizer: Any, data_dir: str | None = None) -> tuple[list[Example], FeatureSet]:
    """The questions a run is scored on (its split, sample and seed, from `config`) and their windows
    (the run's lengths; from the feature cache when there): what re-scoring a run or an export needs.

    Args:
        data_dir: where SQuAD is; None: the run's own setting.
    """
    examples, path = eval_questions(data_dir or config.data_dir, config.questions)
    features, _ = load_or_build_features(examples, tokenizer, config.max_length, config.doc_stride, md5_of(path))
    return examples, features


def evaluate(
    model,
    examples: list[Example],
    features: FeatureSet,
    pad_token_id: int,
    scoring: ScoringSettings = DEFAULT_SCORING,
) -> EvalResult:
    """Predict every feature, post-process to one answer per question and score with EM/F1.

    `features` were built from `examples` with the windows of `scoring`; its batch size, n_best and
    answer length apply here.
    """
    began = time.perf_counter()
    start_logits, end_logits, loss = predict_logits(model, features, scoring.batch_size, pad_token_id)
    candidates = postprocess(examples, features, start_logits, end_logits, scoring.n_best, scoring.max_answer_tokens)
    predictions = best_answers(candidates)
    gold = gold_answers(examples)
    metrics: dict[str, Any] = compute_metrics(predictions, gold)
    scores = question_scores(predictions, gold)
    for name in ("exact_match", "f1"):
        metrics[f"{name}_ci"] = list(bootstrap_interval([row[name] for row in scores.values()]))
    seconds = time.perf_counter() - began
    return EvalResult(metrics, loss, predictions, candidates, scores, seconds, len(features) / max(seconds, 1e-9))


def answer_question(
    model,
    tokenizer,
    question: str,
    context: str,
    top_k: int = 1,
    scoring: ScoringSettings = DEFAULT_SCORING,
    bf16: bool = False,
) -> list[Candidate]:
    """The `top_k` best answers to one question over the whole context (sliding windows)."""
    example = Example("question", question, context, (), ())
    features = build_features([example], tokenizer, scoring.max_length, scoring.doc_stride)
    start_logits, end_logits, _ = predict_logits(model, features, scoring.batch_size, tokenizer.pad_token_id, bf16)
    n_best = max(scoring.n_best, top_k)
    ranked = postprocess([example], features, start_logits, end_logits, n_best, scoring.max_answer_tokens)
    return ranked[example.id][:top_k]
