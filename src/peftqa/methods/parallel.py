"""Parallel adapters: a scaled bottleneck adapter beside the feed-forward block of every layer,
FFN(x) + s * adapter(x) with x the block's input (He et al., 2022, "Towards a Unified View of
Parameter-Efficient Transfer Learning"; s = 4 and ReLU as there). The machinery is in `bottleneck`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftqa.checks import POSITIVE
from peftqa.methods.bottleneck import BottleneckOptions, reduction_factor_field, register_bottleneck


@dataclass
class ParallelOptions(BottleneckOptions):
    """ReLU (the shared default) as He et al. use it, the adapter's scaling, and a wide bottleneck."""

    # AdapterHub's ParBnConfig (reduction_factor=2): 192 hidden units on MiniLM-L6, where 16 gives 24.
    reduction_factor: int = reduction_factor_field(2)

    adapter_scaling: float = field(
        default=4.0,
        metadata={
            "help": "the parallel adapter's output is multiplied by this (4 in He et al.)",
            "range": POSITIVE,
        },
    )


register_bottleneck(
    "parallel",
    "parallel bottleneck adapters beside the feed-forward block of every layer (scaled), QA head trained",
    ParallelOptions,
    sites=("parallel_ffn",),
    # Houlsby's rate over the scaling: Adam moves each weight by about the rate whatever its gradient, so
    # the output of an adapter scaled by 4 moves 4 times as far as an unscaled one's. Not measured.
    default_lr=1e-3,
    # LoRA's grids over about 4, for the same reason.
    sweep_lrs={"default": (3e-5, 1e-4, 3e-4, 1e-3), "quick": (3e-4, 1e-3, 3e-3)},
    trainable_params={"distilbert": 3_547_394, "minilm-l6": 888_962},
)
