"""Pfeiffer adapters: one bottleneck adapter per layer, after the feed-forward block (Pfeiffer et al.,
2021, "AdapterFusion: Non-Destructive Task Composition for Transfer Learning"), with ReLU as there, as
AdapterHub's SeqBnConfig places it: the adapter reads the normalised residual stream LN(h + x), h the
feed-forward output and x the block's input, and the block computes LN(h + adapter(LN(h + x)) + x).
The machinery is in `bottleneck`.
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
    sites=("ffn_seq_bn",),
    # Runs saved before the adapter read LN(h + x) had it on h alone (Houlsby's feed-forward adapter).
    sites_before=("ffn",),
    # The rate the quick study's sweep chose on MiniLM-L6 for the adapter on h alone, with the QA head at
    # the same rate (docs/results/2026-12-01-every-method.md): a starting point, not a measurement.
    default_lr=1e-2,
    trainable_params={"distilbert": 448_802, "minilm-l6": 113_810},
)
