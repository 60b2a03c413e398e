"""HRA: each targeted layer's weight is multiplied by a chain of r trained Householder reflections
(Yuan et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ATTENTION


@dataclass
class HraOptions:
    hra_r: int = field(default=8, metadata={"help": "number of Householder reflections per layer (even)"})
    target_modules: str | None = target_modules_option("the attention projections (query, key, value, output)")

    def __post_init__(self) -> None:
        if self.hra_r % 2:
            # peft starts the reflections in equal pairs, which cancel (the identity), only for an even r.
            raise ValueError(f"hra_r must be even, got {self.hra_r}")


def peft_config(model: Any, options: HraOptions) -> Any:
    from peft import HRAConfig

    return HRAConfig(
        r=options.hra_r,
        target_modules=targets(model, options, ATTENTION, "hra"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "hra",
    "HRA (a chain of Householder reflections of the weights) on the attention projections, QA head trained",
    HraOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"hra_u\.",
    rank_option="hra_r",
    trainable_params={"distilbert": 148_994, "minilm-l6": 74_498},
    starts_as_base=True,
)
