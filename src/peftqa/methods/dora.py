"""DoRA: LoRA's low-rank update on the direction of each weight plus a trained magnitude per output
(Liu et al., 2024). One extra vector of `out_features` per targeted layer; learning rate as LoRA."""

from __future__ import annotations

from peftqa.methods._lora_variant import register_variant

register_variant(
    "dora",
    "DoRA (weight-decomposed LoRA) on every linear layer of the encoder, QA head trained",
    default_lr=5e-4,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (3e-4, 1e-3, 3e-3)},
    trained_names=r"lora_[AB]\.|lora_magnitude_vector",
    use_dora=True,
    trainable_params={"distilbert": 1_370_114, "minilm-l6": 685_058},
    starts_as_base=True,
)
