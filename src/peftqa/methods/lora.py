"""LoRA: a trainable low-rank update B @ A beside each targeted linear layer (Hu et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, modules_option, register_peft, targets
from peftqa.methods.targets import ALL_LINEAR

RANK_OPTION = "lora_r"
TRAINED_NAMES = r"lora_[AB]\."


@dataclass
class LoraOptions:
    lora_r: int = field(default=16, metadata={"help": "rank of the update matrices"})
    lora_alpha: int = field(default=32, metadata={"help": "scaling numerator: the update is scaled by alpha/r"})
    lora_dropout: float = field(
        default=0.0,
        # 0 by default: on a CPU the dropout mask costs more than the LoRA products themselves, and short
        # runs gain little from it (docs/results/2026-11-26-dropout.md).
        metadata={"help": "dropout on the LoRA input"},
    )
    target_modules: str | None = modules_option(
        "comma-separated layer names or a regex; default: every linear layer of the encoder"
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


def peft_config(model: Any, options: LoraOptions) -> Any:
    from peft import LoraConfig

    layers = targets(model, options, ALL_LINEAR, "lora")
    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=layers,
        modules_to_save=QA_HEAD,
        bias="none",
    )


register_peft(
    "lora",
    "LoRA on every linear layer of the encoder, QA head trained",
    LoraOptions,
    peft_config,
    # The top of the usual 5e-4..1e-3 range: short runs (a few hundred steps, as on a CPU) underfit
    # at 5e-4 (docs/results/2026-11-27-quick-study.md).
    default_lr=1e-3,
    # The quick grid is centred on the rate its sweep chose on MiniLM-L6, with the QA head at the same rate
    # (docs/results/2026-11-27-quick-study.md).
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=TRAINED_NAMES,
    rank_option=RANK_OPTION,
    trainable_params={"distilbert": 1_328_642, "minilm-l6": 664_322},
    starts_as_base=True,
)
