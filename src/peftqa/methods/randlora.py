"""RandLoRA: a full-rank update made of frozen shared random low-rank bases, of which each layer trains
only diagonal scalings (Albert et al., 2025)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import ALL_LINEAR


@dataclass
class RandloraOptions:
    randlora_r: int = field(
        default=32,
        # Inverse to LoRA's rank: the bases together span the full rank, so there are (smaller side) / r of them.
        metadata={"help": "rank of each random basis; more bases, and more trained parameters, as it shrinks"},
    )
    randlora_alpha: int = field(default=640, metadata={"help": "scaling numerator: the update is scaled by alpha/r"})
    # peft writes the shared bases once per adapted layer, hundreds of times the size of the trained
    # scalings (docs/results/2026-12-01-every-method.md). Off, loading regenerates them from the config's
    # seed, which depends on torch's random generator giving the same bases wherever the adapter is loaded.
    randlora_save_projection: bool = field(
        default=True,
        metadata={
            "help": "save the frozen random bases with the adapter (large); false: "
            "regenerate them from the seed when loading (an adapter of the trained scalings only)"
        },
    )
    target_modules: str | None = target_modules_option("every linear layer of the encoder")


def peft_config(model: Any, options: RandloraOptions) -> Any:
    from peft import RandLoraConfig

    return RandLoraConfig(
        r=options.randlora_r,
        randlora_alpha=options.randlora_alpha,
        target_modules=targets(model, options, ALL_LINEAR, "randlora"),
        save_projection=options.randlora_save_projection,
        modules_to_save=QA_HEAD,
    )


register_peft(
    "randlora",
    "RandLoRA (trained scalings of shared random bases) on every linear layer of the encoder, QA head trained",
    RandloraOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-3,
    sweep_lrs={"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)},
    trained_names=r"randlora_(lambda|gamma)\.",
    rank_option="randlora_r",
    trainable_params={"distilbert": 692_738, "minilm-l6": 180_482},
    # The trained scalings on one side start at zero, so the update does.
    starts_as_base=True,
)
