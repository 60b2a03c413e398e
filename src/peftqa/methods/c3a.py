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

# peft's C3A docs advise a block size (a divisor of gcd(d1, d2)) near sqrt(d1 d2) / r, d1 and d2 the
# layer's sides and r a LoRA rank: for r = 16, 24 for MiniLM-L6's 384x384 and 48 for its 384x1536 matrices. 48 divides
# MiniLM-L6's and DistilBERT's widths; one block per matrix (the gcd, 384) would give the fewest
# parameters possible.
BLOCK_AT_MOST = 48


@dataclass
class C3aOptions:
    c3a_block_size: int | None = field(
        default=None,
        metadata={
            "help": "side of each circulant block, dividing every targeted layer's features; fewer parameters as it "
            f"grows (default: the largest up to {BLOCK_AT_MOST} that divides every linear layer of the encoder)"
        },
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: C3aOptions) -> Any:
    from peft import C3AConfig

    return C3AConfig(
        block_size=options.c3a_block_size or common_divisor(model, at_most=BLOCK_AT_MOST),
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
    # peft divides C3A's output by the input width, so it wants high rates: its docs give 1e-1 as "a good
    # starting point", its benchmark and example notebook train at 3e-1 (weight decay 1e-5 and 0). Rates
    # for the kernels only: the QA head keeps its own (peft's notebook trains it at 4e-6 beside them).
    default_lr=1e-1,
    sweep_lrs={"default": (3e-2, 1e-1, 3e-1), "quick": (1e-1, 3e-1)},
    trained_names=r"c3a_kernel\.",
    no_decay=r"c3a_kernel\.",  # decay at these rates would shrink the kernels by a large share in a run
    trainable_params={"distilbert": 886_274, "minilm-l6": 221_954},
    starts_as_base=True,
)
