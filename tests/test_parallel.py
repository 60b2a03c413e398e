"""The fast paths give the same results as the plain ones.

- Tokenisation: the windowed fast path (each context tokenised once) builds exactly the FeatureSet
  that tokenising every (question, context) pair with the tokenizer's own truncation builds.
- Data-parallel training: two CPU processes (gloo) with the same global batch end with the same
  trainable weights as one process, within atol 1e-5 (float sums are reordered by the all-reduce).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from peftqa import features as features_module
from peftqa.backbone import load_tokenizer
from peftqa.data import Example
from peftqa.features import FeatureSet, build_features, pair_template, window_starts
from tests.conftest import TOKENIZER_DIR


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER_DIR))


def _examples() -> list[Example]:
    """Short and long contexts, shared contexts, a very long question, no answer, accents."""
    filler = " ".join(
        f"Sentence number {i} talks about the château of Émile, (built in {1700 + i})." for i in range(40)
    )
    long_context = f"{filler} The treasure lies under the old oak tree. {filler}"
    short_context = "Pride and Prejudice was written by Jane Austen and published in 1813."
    long_question = "Which " + " ".join(f"very{i}" for i in range(80)) + " tree?"

    def example(qid: str, question: str, context: str, answer: str | None) -> Example:
        if answer is None:
            return Example(qid, question, context, (), ())
        return Example(qid, question, context, (answer,), (context.index(answer),))

    return [
        example("a", "Where is the treasure?", long_context, "the old oak tree"),
        example("b", "   Who built the château?", long_context, "Émile"),
        example("c", long_question, long_context, "oak"),
        example("d", "Who wrote it?", short_context, "Jane Austen"),
        example("e", "When?", short_context, "1813"),
        example("f", "What is asked at prediction time?", long_context, None),
        example("g", "When was number 39 built?", long_context, "1739"),
    ]


def _pairs_path(examples: list[Example], tokenizer, max_length: int, stride: int) -> FeatureSet:
    return features_module._build_chunk(examples, 0, tokenizer, max_length, stride)


def _assert_same(left: FeatureSet, right: FeatureSet) -> None:
    for field in dataclasses.fields(FeatureSet):
        a, b = getattr(left, field.name), getattr(right, field.name)
        assert (a is None) == (b is None), field.name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), field.name


@pytest.mark.parametrize(("max_length", "stride"), [(128, 32), (160, 64), (384, 128)])
def test_windowed_fast_path_equals_tokenising_every_pair(tokenizer, max_length, stride):
    examples = _examples()
    assert pair_template(tokenizer) is not None  # the fast path is the one under test
    fast = build_features(examples, tokenizer, max_length, stride)
    _assert_same(fast, _pairs_path(examples, tokenizer, max_length, stride))
    assert len(fast) > len(examples)  # several windows per long context


def test_chunks_and_fallback_give_the_same_features(tokenizer, monkeypatch):
    examples = _examples()
    expected = _pairs_path(examples, tokenizer, 128, 32)
    monkeypatch.setattr(features_module, "_TOKENIZE_CHUNK", 3)
    _assert_same(build_features(examples, tokenizer, 128, 32), expected)
    # A tokenizer whose pair layout cannot be reproduced falls back to the pair path.
    monkeypatch.setattr(features_module, "pair_template", lambda tokenizer: None)
    _assert_same(build_features(examples, tokenizer, 128, 32), expected)


def test_window_starts_cover_the_context_like_the_tokenizer():
    assert list(window_starts(10, 20, 5)) == [0]
    assert list(window_starts(20, 20, 5)) == [0]
    assert list(window_starts(21, 20, 5)) == [0, 15]
    assert list(window_starts(50, 20, 5)) == [0, 15, 30]
    assert list(window_starts(51, 20, 5)) == [0, 15, 30, 45]


# ---------------------------------------------------------------------------- data parallel

PARALLEL_ATOL = 1e-5  # two ranks vs one: the same global batches, gradients summed in another order
# The QA head's bias adds one constant to every logit of a softmax, so its true gradient is exactly 0:
# what is computed is rounding noise, which Adam turns into +-lr steps in either run. Not compared.
NOISE_ONLY = ("qa_outputs.bias",)


@pytest.fixture(scope="module")
def tiny_bert_without_dropout(tmp_path_factory):
    """A tiny random BERT whose forward pass is deterministic (no dropout), so runs can be compared."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(TOKENIZER_DIR).save_pretrained(folder)
    return folder


def _train_flags(model_dir, squad_dir, out) -> list[str]:
    # Batch 3 over 6 features: each global batch splits 2 + 1 over two ranks (the uneven case).
    values = {
        "--model": model_dir,
        "--data-dir": squad_dir,
        "--method": "lora",
        "--max-length": 128,
        "--doc-stride": 32,
        "--batch-size": 3,
        "--eval-batch-size": 4,
        "--epochs": 2,
        "--lr": 1e-2,
        "--output-dir": out,
    }
    return [str(item) for pair in values.items() for item in pair]


def _adapter_weights(run_dir) -> dict:
    from safetensors.torch import load_file

    files = sorted((run_dir / "adapter").rglob("*.safetensors"))
    assert files, f"no adapter weights in {run_dir}"
    return {name: tensor for f in files for name, tensor in load_file(f).items()}


def test_two_gloo_processes_match_one_process(tiny_bert_without_dropout, squad_dir, tmp_path):
    import os
    import subprocess
    import sys

    import torch

    from peftqa.cli import main as cli_main

    single, double = tmp_path / "single", tmp_path / "double"
    assert cli_main(["train", *_train_flags(tiny_bert_without_dropout, squad_dir, single)]) in (0, None)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    completed = subprocess.run(
        [*launch, "-m", "peftqa", "train", *_train_flags(tiny_bert_without_dropout, squad_dir, double)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    one, two = _adapter_weights(single), _adapter_weights(double)
    assert one.keys() == two.keys()
    changed = False
    for name in (n for n in one if not n.endswith(NOISE_ONLY)):
        torch.testing.assert_close(two[name], one[name], atol=PARALLEL_ATOL, rtol=0, msg=name)
        changed |= not torch.equal(one[name], torch.zeros_like(one[name]))
    assert changed  # the comparison is about trained weights, not untouched zeros
    metrics_one = json.loads((single / "metrics.json").read_text())
    metrics_two = json.loads((double / "metrics.json").read_text())
    assert metrics_two["steps"] == metrics_one["steps"]
    for entry_one, entry_two in zip(metrics_one["history"], metrics_two["history"], strict=True):
        assert entry_two["train_loss"] == pytest.approx(entry_one["train_loss"], abs=1e-4)
        assert entry_two["f1"] == pytest.approx(entry_one["f1"], abs=1e-6)


def test_cache_key_survives_tokenizer_calls(tokenizer, tmp_path):
    """Tokenizer calls change the backend's truncation settings; the cache must still be found."""
    from peftqa.features import load_or_build_features

    examples = _examples()
    _, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    assert not cached
    tokenizer("a question", "a context", truncation="only_second", max_length=64, padding="max_length")
    again, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    assert cached
    _assert_same(again, build_features(examples, tokenizer, 128, 32))
