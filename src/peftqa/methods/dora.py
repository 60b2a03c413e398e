"""DoRA: LoRA's low-rank update on the direction of each weight plus a trained magnitude per output
(Liu et al., 2024). One extra vector of `out_features` per targeted layer; learning rate as LoRA."""

from __future__ import annotations

from peftqa.methods._lora_variant import register_variant

register_variant(
    "dora",
    "DoRA (weight-decomposed LoRA) on every linear layer of the encoder, QA head trained",
    default_lr=5e-4,
    use_dora=True,
)
