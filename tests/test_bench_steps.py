"""bench_steps: the profile splits a real training step's time into its parts."""

from __future__ import annotations

import torch

from benchmarks.bench_steps import PROFILE_PARTS, profile_steps
from peftqa.methods import get_method
from peftqa.model.backbone import load_qa_model


def test_the_profile_of_a_step_finds_its_matrix_products_attention_and_optimizer(tiny_bert_without_dropout):
    spec = get_method("lora")
    model = spec.apply(load_qa_model(str(tiny_bert_without_dropout)), spec.make_options({})).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = {
        "input_ids": torch.randint(1000, 2000, (4, 32)),
        "attention_mask": torch.ones(4, 32, dtype=torch.long),
        "start_positions": torch.tensor([1, 2, 3, 4]),
        "end_positions": torch.tensor([2, 3, 4, 5]),
    }
    for precision in ("fp32", "bf16"):
        parts = profile_steps(model, optimizer, [batch, batch], precision)
        assert set(parts) == {name for name, _ in PROFILE_PARTS} | {"rest of forward/backward"}
        for name in ("matrix products", "attention", "optimizer (AdamW)", "rest of forward/backward"):
            assert parts[name] > 0, (precision, name, parts)
