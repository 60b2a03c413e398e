"""inference.evaluate: scoring a model on features; results do not depend on how the rows are batched."""

from __future__ import annotations

import pytest
import torch

from peftqa.data import load_squad
from peftqa.features.windows import build_features
from peftqa.inference.evaluate import evaluate
from peftqa.settings.run_config import ScoringSettings


def test_scores_do_not_depend_on_the_eval_batch_size(tiny_bert_dir, squad_dir):
    from peftqa.model.backbone import load_qa_model, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_qa_model(tiny_bert_dir), load_tokenizer(tiny_bert_dir)
    examples = load_squad(squad_dir / "dev-v1.1.json")
    features = build_features(examples, tokenizer, 128, 32)
    assert len(set(features.lengths)) > 1  # batches of one and of several rows pad differently
    # None: the device's default (16 on a CPU).
    results = [
        evaluate(model, examples, features, tokenizer.pad_token_id, ScoringSettings(batch_size=size))
        for size in (1, 3, None)
    ]
    assert results[0].predictions == results[1].predictions == results[2].predictions
    assert results[0].loss == pytest.approx(results[1].loss, rel=1e-5) == results[2].loss


def test_the_null_threshold_is_chosen_on_the_tuning_questions_and_only_there(tiny_bert_dir, tmp_path):
    from peftqa.inference.evaluate import NullRule
    from peftqa.inference.postprocess import best_answers
    from peftqa.model.backbone import load_qa_model, load_tokenizer
    from peftqa.scoring.metrics import compute_metrics_v2
    from tests.squad_fixtures import many_articles, write_v2

    torch.manual_seed(0)
    model, tokenizer = load_qa_model(tiny_bert_dir), load_tokenizer(tiny_bert_dir)
    extra = write_v2_extra()
    examples = load_squad(write_v2(tmp_path / "v2.json", extra[:1] + many_articles(8) + extra[1:]))
    tune, scored = examples[: len(examples) // 2], examples[len(examples) // 2 :]
    assert any(not e.answers for e in tune) and any(not e.answers for e in scored)
    tune_features, features = build_features(tune, tokenizer, 128, 32), build_features(scored, tokenizer, 128, 32)
    pad = tokenizer.pad_token_id
    tuned_alone = evaluate(model, tune, tune_features, pad, null=NullRule())  # chosen on its own questions
    result = evaluate(model, scored, features, pad, null=NullRule(None, tune, tune_features))
    threshold = result.answerability["null_threshold"]
    assert threshold == tuned_alone.answerability["null_threshold"]
    gold_tune = {e.id: list(e.answers) for e in tune}
    assert (
        threshold
        == compute_metrics_v2(best_answers(tuned_alone.candidates), gold_tune, tuned_alone.null_differences)[
            "best_f1_thresh"
        ]
    )
    # Scored with that threshold: "no answer" exactly where null - best span score exceeds it.
    for question_id, answer in result.predictions.items():
        assert (answer == "") is (result.null_differences[question_id] > threshold)
    assert evaluate(model, scored, features, pad, null=NullRule(threshold)).predictions == result.predictions
    for key in ("HasAns_f1", "NoAns_exact", "best_f1", "best_f1_thresh", "HasAns_f1_ci", "NoAns_exact_ci"):
        assert key in result.answerability
    assert result.metrics["count"] == len(scored)


def write_v2_extra() -> list[dict]:
    """Two more articles whose questions have no answer in their paragraph."""
    return [
        {
            "title": f"Extra {i}",
            "paragraphs": [
                {
                    "context": f"Extra article {i} says nothing about towns.",
                    "qas": [{"id": f"x{i}", "question": "Which town?", "answers": [], "is_impossible": True}],
                }
            ],
        }
        for i in range(2)
    ]
