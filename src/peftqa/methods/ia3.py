"""(IA)3: learned vectors that rescale keys, values and the feed-forward activation (Liu et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftqa.methods._peft import QA_HEAD, given_modules, modules_option, register_peft
from peftqa.methods.targets import IA3_TARGETS, lookup


@dataclass
class IA3Options:
    target_modules: str | None = modules_option(
        "layers to rescale (comma-separated or a regex); default: keys, values, FF output"
    )
    feedforward_modules: str | None = modules_option(
        "those of the targets whose input (not output) is rescaled; default: the FF output"
    )


def peft_config(model: Any, options: IA3Options) -> Any:
    from peft import IA3Config

    default_targets, default_feedforward = lookup(IA3_TARGETS, model.config.model_type, "ia3")
    targets = given_modules(model, options.target_modules) or default_targets
    feedforward = given_modules(model, options.feedforward_modules, "--feedforward-modules")
    if feedforward is None:
        # Named targets without named FF modules: none are feed-forward, which is always consistent.
        feedforward = default_feedforward if options.target_modules is None else []
    return IA3Config(target_modules=targets, feedforward_modules=feedforward, modules_to_save=QA_HEAD)


register_peft(
    "ia3",
    "(IA)3 on keys, values and the feed-forward activation, QA head trained",
    IA3Options,
    peft_config,
    default_lr=2e-2,
    # The quick grid is centred on the rate its sweep chose on MiniLM-L6 (with the QA head at the same rate),
    # so that a best on the edge (the sign of a grid in the wrong place) stays visible; chosen by F1, not
    # loss (docs/results/2026-11-27-quick-study.md).
    sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)},
    trained_names=r"ia3_l\.",
    # Scale vectors that start at 1 (shaped (out, 1), so decayed by rank): decay would pull them to zero.
    no_decay=r"ia3_l\.",
    trainable_params={"distilbert": 29_186, "minilm-l6": 14_594},
    starts_as_base=True,
)
