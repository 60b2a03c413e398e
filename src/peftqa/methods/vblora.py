"""VB-LoRA: every layer's low-rank factors are assembled from a top-k mix of vectors in one shared
trained vector bank (Li et al., 2024)."""

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

LONGEST_VECTOR = 256  # the paper's length


@dataclass
class VbloraOptions:
    vblora_r: int = field(default=4, metadata={"help": "rank of each layer's update"})
    vblora_num_vectors: int = field(default=256, metadata={"help": "vectors in the shared bank"})
    vblora_vector_length: int | None = field(
        default=None,
        metadata={
            "help": f"length of each bank vector, dividing every targeted layer's features (default: the largest up "
            f"to {LONGEST_VECTOR} that divides every linear layer of the encoder)"
        },
    )
    vblora_topk: int = field(default=2, metadata={"help": "bank vectors mixed into each piece of a factor"})
    target_modules: str | None = target_modules_option("every linear layer of the encoder")

    def __post_init__(self) -> None:
        if self.vblora_topk > self.vblora_num_vectors:
            raise ValueError(f"vblora_topk ({self.vblora_topk}) exceeds vblora_num_vectors ({self.vblora_num_vectors})")


def peft_config(model: Any, options: VbloraOptions) -> Any:
    from peft import VBLoRAConfig

    return VBLoRAConfig(
        r=options.vblora_r,
        num_vectors=options.vblora_num_vectors,
        vector_length=options.vblora_vector_length or common_divisor(model, at_most=LONGEST_VECTOR),
        topk=options.vblora_topk,
        target_modules=targets(model, options, ALL_LINEAR, "vblora"),
        modules_to_save=QA_HEAD,
    )


register_peft(
    "vblora",
    "VB-LoRA (low-rank factors mixed from one shared vector bank) on every linear layer, QA head trained",
    VbloraOptions,
    peft_config,
    # The logits' rate in peft's docs; the quick study's sweep chose it too, with the QA head at the same
    # rate (docs/results/2026-12-01-every-method.md), so not a measurement of the adapter alone.
    default_lr=1e-2,
    # peft's VB-LoRA docs: "0.01 for logits and 0.001 for vector bank" (its example notebook too).
    lr_scales={r"vblora_vector_bank\.": 0.1},
    # Up to ten times the docs' rate: the bank learns at a tenth of it, and the quick study's score was
    # with the bank at 1e-2.
    sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)},
    trained_names=r"vblora_(logits_[AB]|vector_bank)\.",
    rank_option="vblora_r",
    trainable_params={"distilbert": 398_850, "minilm-l6": 271_106},
    # Both the bank and the logits start random, so the update does not start at zero.
    starts_as_base=False,
)
