"""MiSS: each targeted layer's update is one trained shard of r rows, shared across the weight's blocks
(Kang and Yin, 2025; peft's successor to Bone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class MissOptions:
    miss_r: int = field(
        default=32,
        # 32, not peft's 64: it divides every encoder width here (384 and up), and on a square layer it
        # trains as many parameters as LoRA at rank 16.
        metadata={"help": "rows of the shared shard (trains r * out features per layer); must divide in features"},
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: MissOptions) -> Any:
    from peft import MissConfig

    return MissConfig(
        r=options.miss_r,
        target_modules=targets(model, options, ALL_LINEAR, "miss"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "miss",
    "MiSS (one shared trained shard per weight) on every linear layer of the encoder, QA head trained",
    MissOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"miss_block\.",
    rank_option="miss_r",
    trainable_params={"distilbert": 1_328_642, "minilm-l6": 664_322},
    # The shard starts at zero, so the update does.
    starts_as_base=True,
)
