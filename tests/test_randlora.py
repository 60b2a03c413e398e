"""RandLoRA's `--randlora-save-projection false`: an adapter without the frozen random bases, which
loading regenerates from the seed to the same logits."""

from __future__ import annotations

import torch
from safetensors import safe_open

from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model
from tests.helpers import random_batch, trained_two_steps


def _trained_and_saved(model_dir, folder, **options):
    spec = get_method("randlora")
    model = trained_two_steps(spec, model_dir, spec.make_options(options))
    with torch.no_grad():
        logits = model(**random_batch(1)).start_logits
    spec.save(model, folder)
    (weights,) = (folder / spec.artifact).glob("*.safetensors")
    with safe_open(str(weights), "pt") as saved:
        keys = list(saved.keys())
    return spec, logits, keys, weights.stat().st_size


def test_without_the_bases_the_adapter_is_smaller_and_reloads_to_the_same_logits(tiny_bert_dir, tmp_path):
    _, _, with_bases, size_with = _trained_and_saved(tiny_bert_dir, tmp_path / "with")
    spec, before, keys, size_without = _trained_and_saved(
        tiny_bert_dir, tmp_path / "without", randlora_save_projection=False
    )

    assert any("randlora_A" in k or "randlora_B" in k for k in with_bases)
    assert keys and not any("randlora_A" in k or "randlora_B" in k for k in keys), keys[:4]
    assert size_without < size_with / 2, (size_without, size_with)
    torch.manual_seed(123)  # another generator state at load: the bases come from the config's seed
    reloaded = spec.load(load_qa_model(str(tiny_bert_dir)), tmp_path / "without")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**random_batch(1)).start_logits, before)
