"""The training step's arithmetic: bf16 autocast where the hardware multiplies bf16 natively, else fp32.

bf16 autocast runs the matrix products of the forward pass (and so of the backward pass) in bf16
while the weights, AdamW's state and the gradients they receive stay fp32, so a saved adapter, a
resumed run and evaluation (always fp32, so dev scores compare across machines) see fp32 weights.
CUDA GPUs and CPUs with bf16 units (AMX, AVX-512 BF16) multiply bf16 at twice the fp32 rate or more;
elsewhere oneDNN emulates bf16, several times slower than fp32, so `auto` keeps those in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from peftqa import hardware


@dataclass(frozen=True)
class Precision:
    """The arithmetic a run trains in, and why (run.json records both)."""

    setting: str  # RunConfig.precision: auto, fp32 or bf16
    bf16: bool  # bf16 autocast around the training steps
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "used": "bf16" if self.bf16 else "fp32", "why": self.why}


def resolve_precision(
    setting: str, device: torch.device, cpuinfo: str | None = None, fp32_under_auto: str | None = None
) -> Precision:
    """What `setting` means on `device` for a method (`cpuinfo`: /proc/cpuinfo's text, read when None;
    `fp32_under_auto`: the method's reason to train in fp32 under auto, MethodSpec.fp32_under_auto)."""
    if setting == "auto" and fp32_under_auto:
        return Precision(setting, False, f"auto: this method trains in fp32 ({fp32_under_auto})")
    if device.type == "cuda":
        return Precision(setting, setting != "fp32", f"{setting} on CUDA")
    units = hardware.cpu_bf16_units(cpuinfo)
    if setting == "fp32":
        return Precision(setting, False, "fp32 asked for")
    if setting == "bf16":
        emulated = "" if units else " (this CPU has no bf16 units: emulated, several times slower than fp32)"
        return Precision(setting, True, "bf16 asked for" + emulated)
    if units:
        return Precision(setting, True, f"auto: this CPU has bf16 units ({', '.join(units)})")
    told = "has no bf16 units (AMX, AVX-512 BF16)" if units is not None else "cannot tell its bf16 units"
    return Precision(setting, False, f"auto: this CPU {told}, where bf16 is emulated")
