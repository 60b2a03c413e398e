"""VeRA: one pair of frozen random matrices shared by every targeted layer, and per layer only two
trained scaling vectors, d (size r) and b (size out_features) (Kopiczko et al., 2024).

Defaults follow the paper: query and value projections (same shape, so one shared pair of
projections fits all), r=256, and a learning rate far above LoRA's (the vectors start near 0).
The projections are saved with the adapter, so loading never depends on a random generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._peft import QA_HEAD, modules_option, register_peft, targets
from peftqa.methods.targets import VERA_TARGETS


@dataclass
class VeraOptions:
    vera_r: int = field(default=256, metadata={"help": "rank of the shared frozen random projections"})
    vera_d_initial: float = field(default=0.1, metadata={"help": "initial value of the trained d vectors"})
    target_modules: str | None = modules_option(
        "comma-separated layer names or a regex; default: query and value projections"
    )


def peft_config(model: Any, options: VeraOptions) -> Any:
    from peft import VeraConfig

    layers = targets(model, options, VERA_TARGETS, "vera")
    return VeraConfig(
        r=options.vera_r,
        d_initial=options.vera_d_initial,
        target_modules=layers,
        save_projection=True,
        modules_to_save=QA_HEAD,
    )


register_peft(
    "vera",
    "VeRA (shared random projections, trained scaling vectors) on query and value, QA head trained",
    VeraOptions,
    peft_config,
    default_lr=1e-2,
    sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (3e-3, 1e-2, 3e-2)},
    trained_names=r"vera_lambda_[bd]\.",
    rank_option="vera_r",
    trainable_params={"distilbert": 13_826, "minilm-l6": 8_450},
    starts_as_base=True,
)
