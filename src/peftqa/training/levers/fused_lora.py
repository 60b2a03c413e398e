"""A leaner forward for peft's LoRA linear layers while training: fewer kernels per step.

peft computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` with a cast of `x` to the adapter's
dtype (a copy under autocast), the scaling multiply, the addition and a final cast: about six kernels
forward and as many backward per adapted layer, each launched from Python. On a GPU a MiniLM step is
bound by those launches, not by arithmetic. Here a layer with one active adapter, no dropout, no
variant (DoRA) and no LoRA bias computes

    out = addmm(base(x), A(x), B^T, alpha=scaling)

three GEMMs, the scaling and the addition folded into the last one. The modules and parameters are
peft's own (only the instance's `forward` is replaced, and only inside `fused_lora_forward`), so
adapters save and load in peft's format, and evaluation runs peft's forward as a reloaded adapter
does. Numerically it is the same sum in another order (to ~1e-6 in fp32).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch


def _eligible(layer: Any) -> bool:
    """A peft LoRA Linear over a plain nn.Linear whose forward the fused one computes exactly."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(layer) is not LoraLinear or type(layer.base_layer) is not torch.nn.Linear:
        return False
    if getattr(layer, "fan_in_fan_out", False) or layer.merged or len(layer.active_adapters) != 1:
        return False
    name = layer.active_adapters[0]
    return (
        name in layer.lora_A
        and name not in layer.lora_variant
        and isinstance(layer.lora_dropout[name], torch.nn.Identity)
        and layer.lora_B[name].bias is None
        and layer.lora_A[name].bias is None
    )


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    # Anything unusual (peft's mixed-batch adapter_names, an adapter switched off or merged since the
    # layer was patched) takes peft's own path.
    if args or kwargs or self.disable_adapters or self.merged or len(self.active_adapters) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    base = self.base_layer
    flat = x.reshape(-1, x.shape[-1])
    out = torch.nn.functional.linear(flat, base.weight, base.bias)
    low_rank = torch.nn.functional.linear(flat, self.lora_A[name].weight)
    out = torch.addmm(out, low_rank, self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return out.reshape(*x.shape[:-1], out.shape[-1])


@contextlib.contextmanager
def fused_lora_forward(model: torch.nn.Module) -> Iterator[int]:
    """Inside the block, every eligible LoRA layer of `model` runs the fused forward; yields how many.

    On exit the layers run peft's forward again (used around the training steps only, so the epoch's
    evaluation computes exactly what a reloaded adapter computes).
    """
    patched = [m for m in model.modules() if _eligible(m)]
    for layer in patched:
        layer.forward = types.MethodType(_fused_forward, layer)
    try:
        yield len(patched)
    finally:
        for layer in patched:
            del layer.forward
