"""Shared fixtures: tiny random encoders with the real bert-base-uncased vocabulary, tiny SQuAD.

Plain builders the tests share (run settings, hand-made runs, ...) are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TOKENIZER_DIR, tiny_run_config
from tests.squad_fixtures import many_articles, write_squad


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Feature caches go to a per-session temporary folder, never the user's cache."""
    monkeypatch.setenv("PEFTQA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "peftqa-cache"))
    monkeypatch.delenv("PEFTQA_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def squad_dir(tmp_path_factory) -> Path:
    return write_squad(tmp_path_factory.mktemp("squad"))


def _save_tiny(kind: str, folder: Path, **config_overrides) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    if kind == "distilbert":
        config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
        model = DistilBertModel(config)
    else:
        config = BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **config_overrides,
        )
        model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TOKENIZER_DIR).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return _save_tiny("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_without_dropout(tmp_path_factory) -> Path:
    """A tiny random BERT whose forward pass is deterministic (no dropout), so runs can be compared."""
    return _save_tiny(
        "bert",
        tmp_path_factory.mktemp("tiny-bert-no-dropout"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


@pytest.fixture(scope="session")
def tiny_bert_for_learning(tmp_path_factory) -> Path:
    """A tiny random BERT without dropout whose weights are drawn ten times wider than BERT's N(0, 0.02),
    as a trained encoder's are: its attention and feed-forward blocks then move the hidden states, so a
    method that adapts them (or prompts them) can change the answer. At 0.02 every block is near the
    identity and the final LayerNorm leaves a fixed head almost no room, whatever a method does."""
    return _save_tiny(
        "bert",
        tmp_path_factory.mktemp("tiny-bert-for-learning"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,
    )


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory) -> Path:
    return _save_tiny("distilbert", tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session", params=["distilbert", "bert"])
def tiny_model_dir(request, tmp_path_factory) -> Path:
    """Both architectures, one after the other."""
    return _save_tiny(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))


@pytest.fixture
def many_dir(tmp_path):
    return write_squad(tmp_path / "squad", dev=many_articles(12))  # 30 dev questions in 12 articles


@pytest.fixture(scope="session")
def tiny_lora_run(tiny_bert_dir, squad_dir, tmp_path_factory) -> Path:
    """One finished tiny LoRA run (two optimiser steps on tiny BERT and the tiny SQuAD fixture)."""
    from peftqa.training.loop import train

    root = tmp_path_factory.mktemp("tiny-lora-run")
    with pytest.MonkeyPatch.context() as patch:
        # Session fixtures start before the autouse cache fixture: keep caches out of $HOME here too.
        patch.setenv("PEFTQA_CACHE_DIR", str(root / "cache"))
        train(tiny_run_config(tiny_bert_dir, squad_dir, root / "lora", max_steps=2), log=lambda line: None)
    return root / "lora"
