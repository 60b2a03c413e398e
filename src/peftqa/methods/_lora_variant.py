"""LoRA variants that differ from LoRA by one LoraConfig switch (DoRA, rsLoRA).

They share LoRA's options, targets and adapter files; only the flag, the default learning rate and the
sweep grids differ, so each variant module is a single `register_variant(...)` call instead of a copy
of lora.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from peftqa.methods import lora
from peftqa.methods._peft import register_peft
from peftqa.methods.registry import MethodSpec


def register_variant(
    name: str,
    description: str,
    default_lr: float,
    sweep_lrs: Mapping[str, tuple[float, ...]],
    trained_names: str = lora.TRAINED_NAMES,
    trainable_params: Mapping[str, int] | None = None,
    starts_as_base: bool = True,
    **switches: bool,
) -> MethodSpec:
    """Register a method that is LoRA with `switches` (LoraConfig fields) turned on."""

    def peft_config(model: Any, options: lora.LoraOptions) -> Any:
        return dataclasses.replace(lora.peft_config(model, options), **switches)

    return register_peft(
        name,
        description,
        lora.LoraOptions,
        peft_config,
        default_lr=default_lr,
        sweep_lrs=sweep_lrs,
        trained_names=trained_names,
        rank_option=lora.RANK_OPTION,
        trainable_params=trainable_params or {},
        starts_as_base=starts_as_base,
    )
