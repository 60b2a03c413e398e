"""Frozen linear weights stored in bf16 while an adapter trains under bf16 autocast.

Autocast casts an fp32 weight to bf16 in every forward, and caches the cast only for weights that
require a gradient: a frozen base weight is cast again at every step, one extra kernel (and a read of
the fp32 weight) per linear layer per step. Stored in bf16, the weights go to the matrix multiplies as
they are. Only frozen `nn.Linear` weights and biases change: embeddings and LayerNorm stay fp32 (no
per-step cast to save; LayerNorm runs in fp32 under autocast), trainable tensors (adapters, QA head)
stay fp32 for the optimiser.

The fp32 tensors are kept and put back when the block ends, so evaluation, checkpoints and the saved
adapter see the original weights: a run's predictions are those of its adapter reloaded with plain
`PeftModel.from_pretrained` on the fp32 base.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def frozen_linear_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights and biases of `model`'s linear layers that do not train, each once."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            for parameter in module.parameters(recurse=False):
                if not parameter.requires_grad and parameter.dtype == torch.float32:
                    seen.setdefault(id(parameter), parameter)
    return list(seen.values())


@contextlib.contextmanager
def frozen_linears_in_bf16(model: torch.nn.Module) -> Iterator[int]:
    """Inside the block the frozen linear weights of `model` are bf16; yields how many tensors changed.

    The block must run under bf16 autocast (fp32 activations meet bf16 weights otherwise).
    """
    parameters = frozen_linear_parameters(model)
    originals = [parameter.data for parameter in parameters]
    for parameter in parameters:
        parameter.data = parameter.data.to(torch.bfloat16)
    try:
        yield len(parameters)
    finally:
        for parameter, original in zip(parameters, originals, strict=True):
            parameter.data = original
