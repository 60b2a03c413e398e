"""SHiRA: train a fixed random sparse subset of each targeted layer's weights (Bhardwaj et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class ShiraOptions:
    shira_r: int = field(
        default=16,
        # LoRA's default rank: the same count of trained weights as LoRA's.
        metadata={"help": "sets the trained weights per layer to r * (in + out features), as many as rank-r LoRA"},
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: ShiraOptions) -> Any:
    from peft import ShiraConfig

    return ShiraConfig(
        r=options.shira_r,
        target_modules=targets(model, options, ALL_LINEAR, "shira"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "shira",
    "SHiRA (a random sparse subset of the weights) on every linear layer of the encoder, QA head trained",
    ShiraOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-2,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"shira_weight\.",
    rank_option="shira_r",
    trainable_params={"distilbert": 1_328_642, "minilm-l6": 664_322},
    # The trained weights are deltas that start at zero.
    starts_as_base=True,
)
