"""Attention in fp32 inside bf16 autocast, on a CPU.

On a CPU, PyTorch's fused attention kernel is faster in fp32 than in bf16 (its bf16 path converts
inside the kernel), while the matrix products around it gain from bf16; so under bf16 autocast the
queries, keys and values are cast to fp32 for the attention product and the result cast back. The
swap is made on the attention registry transformers dispatches through, only for the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _in_fp32(attention: Any) -> Any:
    def attention_in_fp32(module: torch.nn.Module, query, key, value, attention_mask, *args: Any, **kwargs: Any):
        if query.dtype == torch.float32:
            return attention(module, query, key, value, attention_mask, *args, **kwargs)
        dtype = query.dtype
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        with torch.autocast(query.device.type, enabled=False):
            output, weights = attention(
                module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs
            )
        return output.to(dtype), weights

    return attention_in_fp32


@contextlib.contextmanager
def fp32_attention() -> Iterator[None]:
    """Within the block, transformers' "sdpa" attention computes in fp32 whatever its inputs' dtype."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    had_local = "sdpa" in ALL_ATTENTION_FUNCTIONS._local_mapping
    ALL_ATTENTION_FUNCTIONS["sdpa"] = _in_fp32(original)
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS["sdpa"] = original
        else:
            del ALL_ATTENTION_FUNCTIONS["sdpa"]
