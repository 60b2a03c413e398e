"""Parallel adapters: a scaled bottleneck adapter beside the feed-forward block of every layer,
FFN(x) + s * adapter(x) with x the block's input (He et al., 2022, "Towards a Unified View of
Parameter-Efficient Transfer Learning"; s = 4 and ReLU as there). The machinery is in `bottleneck`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftqa.checks import POSITIVE
from peftqa.methods.bottleneck import BottleneckOptions, register_bottleneck


@dataclass
class ParallelOptions(BottleneckOptions):
    """ReLU (the shared default) as He et al. use it, and the adapter's scaling."""

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
    # Pfeiffer's count: one adapter of the same size per layer, only its input differs.
    # Measured: the rate the quick study's sweep chose on MiniLM-L6 (docs/results/2026-12-01-every-method.md).
    default_lr=1e-2,
    trainable_params={"distilbert": 448_802, "minilm-l6": 113_810},
)
