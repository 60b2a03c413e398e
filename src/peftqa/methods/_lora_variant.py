"""LoRA variants that differ from LoRA by one LoraConfig switch (DoRA, rsLoRA).

They share LoRA's options, targets and adapter files; only the flag and the default learning rate
differ, so each variant module is a single `register_variant(...)` call instead of a copy of lora.py.
"""

from __future__ import annotations

import dataclasses

from peftqa.methods import MethodSpec, lora, register
from peftqa.methods._peft import ADAPTER_DIR, apply_peft, load_adapter, save_adapter


def register_variant(name: str, description: str, default_lr: float, **switches: bool) -> MethodSpec:
    """Register a method that is LoRA with `switches` (LoraConfig fields) turned on."""

    def apply(model, options: lora.LoraOptions):
        return apply_peft(model, dataclasses.replace(lora.peft_config(model, options), **switches))

    return register(
        MethodSpec(
            name=name,
            description=description,
            options_cls=lora.LoraOptions,
            default_lr=default_lr,
            apply=apply,
            save=save_adapter,
            load=load_adapter,
            artifact=ADAPTER_DIR,
        )
    )
