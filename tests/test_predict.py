"""Scoring a model on features: results do not depend on how the rows are batched."""

from __future__ import annotations

import pytest
import torch

from peftqa.config import ScoringSettings
from peftqa.data import load_squad
from peftqa.features import build_features
from peftqa.predict import evaluate


def test_scores_do_not_depend_on_the_eval_batch_size(tiny_bert_dir, squad_dir):
    from peftqa.backbone import load_qa_model, load_tokenizer

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
