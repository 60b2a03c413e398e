"""Houlsby adapters: a bottleneck adapter after the attention output projection and after the
feed-forward output projection of every layer, each on the sub-layer's output before its residual add
and LayerNorm (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP").

Swish is the default non-linearity, as in AdapterHub's Houlsby configuration (the paper leaves it open).
The machinery is in `bottleneck`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftqa.methods.bottleneck import BottleneckOptions, non_linearity_field, register_bottleneck


@dataclass
class HoulsbyOptions(BottleneckOptions):
    adapter_non_linearity: str = non_linearity_field("swish")


register_bottleneck(
    "houlsby",
    "Houlsby bottleneck adapters after attention and feed-forward of every layer, QA head trained",
    HoulsbyOptions,
    sites=("attention", "ffn"),
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    trainable_params={"distilbert": 896_066, "minilm-l6": 226_850},
)
