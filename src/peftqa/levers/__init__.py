"""Speed levers of the training steps: switches that make a step cheaper on a GPU.

Each lever is a setting of RunConfig (on, off, or auto: on for CUDA) and a context manager that holds
only around the training steps, so evaluation, checkpoints and saved weights never see it:

- `frozen_bf16`: frozen linear weights stored in bf16 under bf16 autocast (adapter methods only);
- `fused_lora`: peft's LoRA layers compute their sum in one addmm.

They are not methods: they change how a method's step is computed, not what it trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from peftqa.config import RunConfig
from peftqa.levers.frozen_bf16 import frozen_linears_in_bf16
from peftqa.levers.fused_lora import fused_lora_forward
from peftqa.methods import get_method


@dataclass(frozen=True)
class SpeedLevers:
    """The speed levers in force for one run, resolved from its settings and device (see RunConfig)."""

    frozen_bf16: bool
    fused_lora: bool

    @property
    def autocast(self) -> bool | None:
        """bf16 autocast forced on when frozen weights are bf16 (on any device); else the device's default."""
        return True if self.frozen_bf16 else None

    @classmethod
    def resolve(cls, config: RunConfig, device: torch.device, log: Callable[[str], None]) -> SpeedLevers:
        """The levers `config` asks for on `device`; says which are on, and a lever that cannot apply."""
        on_cuda = device.type == "cuda"
        adapter = get_method(config.method).shares_base
        frozen_bf16 = adapter and (config.frozen_bf16 == "on" or (config.frozen_bf16 == "auto" and on_cuda))
        if config.frozen_bf16 == "on" and not adapter:
            log(f"frozen_bf16: {config.method} trains its base weights, which stay fp32")
        fused = config.fused_lora == "on" or (config.fused_lora == "auto" and on_cuda)
        if frozen_bf16 or fused:
            on = [name for name, value in (("frozen_bf16", frozen_bf16), ("fused_lora", fused)) if value]
            log(f"training levers on: {', '.join(on)}")
        return cls(frozen_bf16, fused)

    @contextlib.contextmanager
    def training(self, model: torch.nn.Module) -> Iterator[None]:
        """The levers in force for the block (the training steps); evaluation runs without them."""
        with contextlib.ExitStack() as stack:
            if self.frozen_bf16:
                stack.enter_context(frozen_linears_in_bf16(model))
            if self.fused_lora:
                stack.enter_context(fused_lora_forward(model))
            yield
