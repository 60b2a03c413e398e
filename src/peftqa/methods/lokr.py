"""LoKr: the update is a Kronecker product of a small and a low-rank matrix (Edalati et al., 2022; LyCORIS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.checks import FINITE
from peftqa.errors import PeftqaError
from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class LokrOptions:
    # r, alpha and the factor of peft's LoKr benchmark (method_comparison experiments/lokr/
    # llama-3.2-3B-rank32-factor4-lr0.003); peft's class defaults (r = alpha = 8, no factor) give each
    # 384x384 matrix of MiniLM-L6 640 parameters, a twenty-third of LoRA's.
    lokr_r: int = field(default=32, metadata={"help": "rank of the larger Kronecker factor"})
    lokr_alpha: int = field(default=64, metadata={"help": "scaling numerator: the update is scaled by alpha/r"})
    lokr_decompose_factor: int = field(
        default=4,
        metadata={
            "help": "side of the smaller Kronecker factor, where it divides a layer's width (-1: as near the "
            "square root of the width as it divides, as peft does unless told)",
            "range": FINITE,  # -1 or >= 1: checked in __post_init__, one rule with one message
        },
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")

    def __post_init__(self) -> None:
        # peft reads a negative factor as "no limit" and 0 as a factor of 1 (a full-width second factor).
        factor = self.lokr_decompose_factor
        if not (factor == -1 or factor >= 1):
            raise PeftqaError(f"--lokr-decompose-factor: must be -1 or a whole number >= 1, got {factor}")


def peft_config(model: Any, options: LokrOptions) -> Any:
    from peft import LoKrConfig

    return LoKrConfig(
        r=options.lokr_r,
        alpha=options.lokr_alpha,
        decompose_factor=options.lokr_decompose_factor,
        target_modules=targets(model, options, ALL_LINEAR, "lokr"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "lokr",
    "LoKr (Kronecker-product update) on every linear layer of the encoder, QA head trained",
    LokrOptions,
    peft_config,
    default_lr=3e-3,  # the benchmark's rate (peft's, above)
    sweep_lrs={"default": (3e-4, 1e-3, 3e-3, 1e-2), "quick": (3e-3, 1e-2, 3e-2)},
    trained_names=r"lokr_w1\.|lokr_w2(_[ab])?\.",
    rank_option="lokr_r",
    trainable_params={"distilbert": 665_666, "minilm-l6": 333_122},
    # The low-rank factor starts at zero, so the update does.
    starts_as_base=True,
)
