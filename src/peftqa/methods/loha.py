"""LoHa: the update is the Hadamard product of two low-rank products (Hyeon-Woo et al., 2022; LyCORIS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class LohaOptions:
    loha_r: int = field(default=8, metadata={"help": "rank of each of the two low-rank factors"})
    loha_alpha: int = field(default=8, metadata={"help": "scaling numerator: the update is scaled by alpha/r"})
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: LohaOptions) -> Any:
    from peft import LoHaConfig

    return LoHaConfig(
        r=options.loha_r,
        alpha=options.loha_alpha,
        target_modules=targets(model, options, ALL_LINEAR, "loha"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "loha",
    "LoHa (Hadamard product of two low-rank updates) on every linear layer of the encoder, QA head trained",
    LohaOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"hada_w[12]_[ab]\.",
    rank_option="loha_r",
    trainable_params={"distilbert": 1_328_642, "minilm-l6": 664_322},
    # One factor of the second product starts at zero, so the update does.
    starts_as_base=True,
)
