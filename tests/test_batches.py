"""Batches: length grouping, batches gathered on the device equal to `collate`'s, and the forward's
inputs without a host read giving the model's own loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from peftqa.data import load_squad
from peftqa.features.batches import (
    DeviceFeatures,
    collate,
    forward_inputs,
    length_grouped_batches,
    pad_to_width,
    uses_sdpa,
)
from peftqa.features.windows import build_features
from peftqa.model.backbone import load_qa_model, load_tokenizer


def _features(model_dir, squad_dir):
    tokenizer = load_tokenizer(str(model_dir))
    features = build_features(load_squad(squad_dir / "train-v1.1.json"), tokenizer, 128, 32)
    return tokenizer, features


def test_length_grouped_batches_cover_every_row_once_and_group_lengths():
    lengths = np.random.default_rng(0).integers(20, 384, size=1000)
    batches = length_grouped_batches(lengths, 16, seed=3)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 40  # random batches would spread over ~300 tokens
    assert all((a == b).all() for a, b in zip(batches, length_grouped_batches(lengths, 16, seed=3), strict=True))


def test_pad_to_width_pads_ids_with_the_pad_token_and_the_rest_with_zeros(tiny_bert_dir, squad_dir):
    tokenizer, features = _features(tiny_bert_dir, squad_dir)
    batch = collate(features, np.arange(3), 7, torch.device("cpu"))
    width = batch["input_ids"].shape[1]
    wider = pad_to_width(batch, width + 5, pad_id=7)
    assert wider["input_ids"].shape == (3, width + 5)
    assert (wider["input_ids"][:, width:] == 7).all() and (wider["attention_mask"][:, width:] == 0).all()
    assert (wider["token_type_ids"][:, width:] == 0).all()
    assert torch.equal(wider["start_positions"], batch["start_positions"])  # labels are not padded
    assert pad_to_width(batch, width, pad_id=7) is batch


@pytest.mark.parametrize("segments", [True, False])
def test_batches_gathered_on_the_device_equal_collate(tiny_bert_dir, squad_dir, segments):
    tokenizer, features = _features(tiny_bert_dir, squad_dir)
    if not segments:  # a model without token types (DistilBERT)
        features = dataclasses.replace(features, token_type_ids=None)
    assert len(set(features.lengths)) > 1  # rows pad differently
    cpu = torch.device("cpu")
    source = DeviceFeatures(features, tokenizer.pad_token_id, cpu)
    batches = length_grouped_batches(features.lengths, 4, seed=1)
    assert len(batches[-1]) < 4 or len(batches[0]) < 4  # a short batch is among them
    for rows, device_rows in zip(batches, source.upload_rows(batches), strict=True):
        expected = collate(features, rows, tokenizer.pad_token_id, cpu)
        width = int(features.lengths[rows].max())
        for wider in (width, width + 7):  # several processes pad their shard as wide as the global batch
            gathered = source.batch(device_rows, wider)
            reference = pad_to_width(expected, wider, tokenizer.pad_token_id)
            assert list(gathered) == list(reference)
            for name, tensor in reference.items():
                assert gathered[name].dtype == tensor.dtype, name
                assert torch.equal(gathered[name], tensor), name


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_forward_inputs_without_a_host_read_give_the_same_loss(tiny_bert_dir, tiny_distilbert_dir, squad_dir, kind):
    model_dir = tiny_bert_dir if kind == "bert" else tiny_distilbert_dir
    tokenizer, features = _features(model_dir, squad_dir)
    model = load_qa_model(str(model_dir), dropout=0.0).eval()
    assert uses_sdpa(model)
    order = np.argsort(features.lengths)
    padded_rows, same_length = order[:4], order[-1:]
    for rows, padded in ((padded_rows, True), (same_length, False)):
        batch = collate(features, rows, tokenizer.pad_token_id, torch.device("cpu"))
        if kind == "distilbert":
            batch.pop("token_type_ids")
        assert bool((batch["attention_mask"] == 0).any()) == padded
        with torch.no_grad():
            expected = model(**batch).loss
            got = model(**forward_inputs(batch, padded, sdpa=True)).loss
        assert torch.equal(got, expected)
