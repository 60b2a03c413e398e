"""LoKr: the update is a Kronecker product of a small and a low-rank matrix (Edalati et al., 2022; LyCORIS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class LokrOptions:
    lokr_r: int = field(default=8, metadata={"help": "rank of the larger Kronecker factor"})
    lokr_alpha: int = field(default=8, metadata={"help": "scaling numerator: the update is scaled by alpha/r"})
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: LokrOptions) -> Any:
    from peft import LoKrConfig

    return LoKrConfig(
        r=options.lokr_r,
        alpha=options.lokr_alpha,
        target_modules=targets(model, options, ALL_LINEAR, "lokr"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "lokr",
    "LoKr (Kronecker-product update) on every linear layer of the encoder, QA head trained",
    LokrOptions,
    peft_config,
    # Measured: the rate the quick study's sweep chose on MiniLM-L6 (docs/results/2026-12-01-every-method.md).
    default_lr=3e-3,
    sweep_lrs={"default": (3e-4, 1e-3, 3e-3, 1e-2), "quick": (3e-3, 1e-2, 3e-2)},
    trained_names=r"lokr_w1\.|lokr_w2(_[ab])?\.",
    rank_option="lokr_r",
    trainable_params={"distilbert": 50_690, "minilm-l6": 29_186},
    # The low-rank factor starts at zero, so the update does.
    starts_as_base=True,
)
