"""Speed levers of the training steps: switches that make a step cheaper.

Each lever is a setting of RunConfig and holds only around the training steps, so evaluation,
checkpoints and saved weights never see it:

- `precision` (levers.precision): bf16 autocast where the hardware multiplies bf16 natively, with
  attention kept in fp32 on a CPU (levers.fp32_attention), where its bf16 kernel is the slower one;
- `frozen_bf16`: frozen linear weights stored in bf16 under bf16 autocast (adapter methods only);
- `fused_lora`: peft's LoRA layers compute their sum in one addmm (auto: on CUDA).

They are not methods: they change how a method's step is computed, not what it trains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from peftqa.methods import get_method
from peftqa.settings.run_config import RunConfig
from peftqa.training.levers.fp32_attention import fp32_attention
from peftqa.training.levers.frozen_bf16 import frozen_linears_in_bf16
from peftqa.training.levers.fused_lora import fused_lora_forward
from peftqa.training.levers.precision import Precision, resolve_precision


@dataclass(frozen=True)
class SpeedLevers:
    """The speed levers in force for one run, resolved from its settings and device (see RunConfig)."""

    precision: Precision
    frozen_bf16: bool
    fused_lora: bool
    fp32_attention: bool = False  # under bf16 autocast on a CPU

    @property
    def autocast(self) -> bool:
        """bf16 autocast around the training steps: the precision's, and always with bf16 frozen weights."""
        return self.precision.bf16 or self.frozen_bf16

    def to_dict(self) -> dict[str, Any]:
        """What run.json records of the levers."""
        return {
            "precision": self.precision.to_dict(),
            "fp32_attention": self.fp32_attention,
            "frozen_bf16": self.frozen_bf16,
            "fused_lora": self.fused_lora,
        }

    @classmethod
    def resolve(cls, config: RunConfig, device: torch.device, log: Callable[[str], None]) -> SpeedLevers:
        """The levers `config` asks for on `device`; says which are on, and a lever that cannot apply."""
        on_cuda = device.type == "cuda"
        precision = resolve_precision(
            config.speed.precision, device, fp32_under_auto=get_method(config.method).fp32_under_auto
        )
        log(f"precision: {precision.to_dict()['used']} ({precision.why})")
        adapter = get_method(config.method).shares_base
        frozen_bf16 = adapter and (config.speed.frozen_bf16 == "on" or (config.speed.frozen_bf16 == "auto" and on_cuda))
        if config.speed.frozen_bf16 == "on" and not adapter:
            log(f"frozen_bf16: {config.method} trains its base weights, which stay fp32")
        fused = config.speed.fused_lora == "on" or (config.speed.fused_lora == "auto" and on_cuda)
        if frozen_bf16 or fused:
            on = [name for name, value in (("frozen_bf16", frozen_bf16), ("fused_lora", fused)) if value]
            log(f"training levers on: {', '.join(on)}")
        return cls(precision, frozen_bf16, fused, fp32_attention=not on_cuda and (precision.bf16 or frozen_bf16))

    @contextlib.contextmanager
    def training(self, model: torch.nn.Module) -> Iterator[None]:
        """The levers in force for the block (the training steps); evaluation runs without them."""
        with contextlib.ExitStack() as stack:
            if self.frozen_bf16:
                stack.enter_context(frozen_linears_in_bf16(model))
            if self.fused_lora:
                stack.enter_context(fused_lora_forward(model))
            if self.fp32_attention:
                stack.enter_context(fp32_attention())
            yield
