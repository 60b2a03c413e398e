"""C3A: each targeted layer's update is a block matrix of trained circulant blocks, applied as circular
convolutions by FFT (Chen et al., 2025)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import (
    QA_HEAD,
    common_divisor,
    register_peft,
    target_modules_option,
    targets,
)
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class C3aOptions:
    c3a_block_size: int | None = field(
        default=None,
        metadata={
            "help": "side of each circulant block, dividing every targeted layer's features; fewer parameters as it "
            "grows (default: the largest that divides every linear layer of the encoder, as peft advises)"
        },
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: C3aOptions) -> Any:
    from peft import C3AConfig

    return C3AConfig(
        block_size=options.c3a_block_size or common_divisor(model),
        target_modules=targets(model, options, ALL_LINEAR, "c3a"),
        # Zero kernels (peft's default draws them at random): the model starts as the base, and the
        # update, linear in them, still gets a gradient.
        init_weights=True,
        modules_to_save=QA_HEAD,
    )


register_peft(
    "c3a",
    "C3A (circulant-block update by circular convolution) on every linear layer of the encoder, QA head trained",
    C3aOptions,
    peft_config,
    # Measured: the rate the quick study's sweep chose on MiniLM-L6 (docs/results/2026-12-01-every-method.md).
    default_lr=3e-2,
    sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)},
    trained_names=r"c3a_kernel\.",
    trainable_params={"distilbert": 56_834, "minilm-l6": 28_418},
    starts_as_base=True,
)
