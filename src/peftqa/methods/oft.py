"""OFT: each targeted layer's weight is rotated by a trained block-diagonal orthogonal matrix
(Qiu et al., 2023; peft's Cayley-Neumann parametrisation, Qiu et al., 2025)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ATTENTION


@dataclass
class OftOptions:
    oft_block_size: int = field(
        default=32,
        # peft moves a size that does not divide a layer's input features to the nearest one that does.
        metadata={"help": "side of each orthogonal block (a layer's input features are split into such blocks)"},
    )
    target_modules: str | None = target_modules_option("the attention projections (query, key, value, output)")


def peft_config(model: Any, options: OftOptions) -> Any:
    from peft import OFTConfig

    return OFTConfig(
        r=0,  # the number of blocks follows from their size: peft takes one or the other
        oft_block_size=options.oft_block_size,
        target_modules=targets(model, options, ATTENTION, "oft"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "oft",
    "OFT (block-diagonal orthogonal rotation of the weights) on the attention projections, QA head trained",
    OftOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"oft_R\.",
    trainable_params={"distilbert": 287_234, "minilm-l6": 143_618},
    # The rotation's skew-symmetric parameters start at zero: the identity.
    starts_as_base=True,
)
