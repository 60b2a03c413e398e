"""LN tuning: train only the LayerNorms' scales and shifts, on trained copies that peft keeps beside
the frozen ones (Zhao et al., 2024; for BERT, Qi et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import LAYER_NORMS


@dataclass
class LnTuningOptions:
    target_modules: str | None = target_modules_option("every LayerNorm (the embeddings' and each block's two)")


def peft_config(model: Any, options: LnTuningOptions) -> Any:
    from peft import LNTuningConfig

    layer_norms = targets(model, options, LAYER_NORMS, "ln_tuning")
    # The QA head is one more target (a trained copy, as each LayerNorm gets), not a module to save:
    # peft's LN-tuning merge unwraps only its own targets, so a saved-module head would stay wrapped
    # in the merged model and `export --format hf` would write it under names transformers ignores.
    if isinstance(layer_norms, list):
        return LNTuningConfig(target_modules=layer_norms + QA_HEAD)
    return LNTuningConfig(target_modules=f"(?:{layer_norms})|{QA_HEAD[0]}")


register_peft(
    "ln_tuning",
    "LayerNorm tuning (every LayerNorm's scale and shift), QA head trained",
    LnTuningOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-2,
    sweep_lrs={"default": (3e-4, 1e-3, 3e-3, 1e-2), "quick": (3e-3, 1e-2, 3e-2)},
    trained_names=r"ln_tuning_layers\.",
    trainable_params={"distilbert": 21_506, "minilm-l6": 10_754},
    # The trained copies start as the LayerNorms they copy.
    starts_as_base=True,
)
