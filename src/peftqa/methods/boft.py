"""BOFT: each targeted layer's weight is rotated by an orthogonal matrix built from butterfly factors
of small orthogonal blocks, and its outputs rescaled (Liu et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ATTENTION


@dataclass
class BoftOptions:
    boft_block_size: int = field(
        default=8,
        # The paper's size on GLUE encoders. It must divide every targeted layer's input features.
        metadata={"help": "side of each orthogonal block; must divide the targeted layers' input features"},
    )
    target_modules: str | None = target_modules_option("the attention projections (query, key, value, output)")


def peft_config(model: Any, options: BoftOptions) -> Any:
    from peft import BOFTConfig

    return BOFTConfig(
        boft_block_size=options.boft_block_size,
        boft_block_num=0,  # follows from the size: peft takes one or the other
        # One butterfly factor: without peft's CUDA extension (any CPU) peft uses one whatever is asked,
        # so an adapter trained with more would not load there.
        boft_n_butterfly_factor=1,
        target_modules=targets(model, options, ATTENTION, "boft"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "boft",
    "BOFT (butterfly orthogonal rotation of the weights) on the attention projections, QA head trained",
    BoftOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"boft_[Rs]\.",
    trainable_params={"distilbert": 167_426, "minilm-l6": 83_714},
    # The rotation starts as the identity and the output scale at one.
    starts_as_base=True,
)
