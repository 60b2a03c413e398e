"""rsLoRA: LoRA scaled by alpha/sqrt(r) instead of alpha/r (Kalajdzievski, 2023), so the update does
not shrink as the rank grows. Same parameters as LoRA; with r=16, alpha=32 the scale is 4x LoRA's,
hence a default learning rate about 4x lower."""

from __future__ import annotations

from peftqa.methods._lora_variant import register_variant

register_variant(
    "rslora",
    "rank-stabilised LoRA (alpha/sqrt(r)) on every linear layer of the encoder, QA head trained",
    default_lr=1.5e-4,
    sweep_lrs={"default": (3e-5, 1e-4, 3e-4, 1e-3), "quick": (1e-4, 3e-4, 1e-3)},
    use_rslora=True,
    trainable_params={"distilbert": 1_328_642, "minilm-l6": 664_322},
    starts_as_base=True,
)
