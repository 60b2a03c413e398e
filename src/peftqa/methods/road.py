"""RoAd: each targeted layer's outputs are paired and every pair rotated and scaled by trained 2D
rotations (Liao and Monz, 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR

VARIANTS = ("road_1", "road_2", "road_4")  # 1, 2 or 4 times out_features trained parameters per layer


@dataclass
class RoadOptions:
    road_variant: str = field(
        default="road_1", metadata={"help": f"one of {', '.join(VARIANTS)}: 1, 2 or 4 parameters per output"}
    )
    road_group_size: int = field(
        default=32,
        # peft's 64 is for serving speed only (the pairing does not change what the model can learn); 32
        # divides every encoder width here.
        metadata={"help": "outputs paired within groups of this size; must divide the targeted layers' outputs"},
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")

    def __post_init__(self) -> None:
        if self.road_variant not in VARIANTS:
            raise ValueError(f"road_variant must be one of {', '.join(VARIANTS)}, got {self.road_variant!r}")
        if self.road_group_size % 2:
            raise ValueError(f"road_group_size must be even (its outputs are paired), got {self.road_group_size}")


def peft_config(model: Any, options: RoadOptions) -> Any:
    from peft import RoadConfig

    return RoadConfig(
        variant=options.road_variant,
        group_size=options.road_group_size,
        target_modules=targets(model, options, ALL_LINEAR, "road"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "road",
    "RoAd (trained 2D rotations and scales of paired outputs) on every linear layer, QA head trained",
    RoadOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    sweep_lrs={"default": (1e-3, 3e-3, 1e-2, 3e-2), "quick": (3e-3, 1e-2, 3e-2)},
    trained_names=r"road_(theta|alpha)\.",
    trainable_params={"distilbert": 43_010, "minilm-l6": 21_506},
    # Angles start at zero and scales at one: the identity.
    starts_as_base=True,
)
