"""Pfeiffer adapters: one bottleneck adapter per layer, after the feed-forward output projection only,
before its residual add and LayerNorm (Pfeiffer et al., 2021, "AdapterFusion: Non-Destructive Task
Composition for Transfer Learning"), with ReLU as there: half of Houlsby's adapters. The machinery is
in `bottleneck`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftqa.methods.bottleneck import BottleneckOptions, register_bottleneck


@dataclass
class PfeifferOptions(BottleneckOptions):
    """ReLU (the shared default) as Pfeiffer et al. use it."""


register_bottleneck(
    "pfeiffer",
    "Pfeiffer bottleneck adapters after the feed-forward block of every layer, QA head trained",
    PfeifferOptions,
    sites=("ffn",),
    # Half of Houlsby's: one adapter per layer instead of two.
    # Measured: the rate the quick study's sweep chose on MiniLM-L6 (docs/results/2026-12-01-every-method.md).
    default_lr=1e-2,
    trainable_params={"distilbert": 448_802, "minilm-l6": 113_810},
)
