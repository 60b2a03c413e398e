"""FourierFT: each targeted layer's update is the inverse Fourier transform of n trained spectral
coefficients at fixed random frequencies (Gao et al., 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.checks import POSITIVE
from peftqa.methods._peft import QA_HEAD, register_peft, target_modules_option, targets
from peftqa.methods.targets import QUERY_VALUE


@dataclass
class FourierftOptions:
    fourierft_n_frequency: int = field(default=1000, metadata={"help": "trained spectral coefficients per layer"})
    fourierft_scaling: float = field(
        default=150.0,
        metadata={"help": "scale of the update (the paper's value for base-sized encoders)", "range": POSITIVE},
    )
    target_modules: str | None = target_modules_option("query and value projections")


def peft_config(model: Any, options: FourierftOptions) -> Any:
    from peft import FourierFTConfig

    return FourierFTConfig(
        n_frequency=options.fourierft_n_frequency,
        scaling=options.fourierft_scaling,
        target_modules=targets(model, options, QUERY_VALUE, "fourierft"),
        # Zero coefficients (peft's default draws them at random): the model starts as the base, and the
        # update, linear in them, still gets a gradient.
        init_weights=True,
        modules_to_save=QA_HEAD,
    )


register_peft(
    "fourierft",
    "FourierFT (trained Fourier coefficients of the update) on query and value, QA head trained",
    FourierftOptions,
    peft_config,
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-1,
    sweep_lrs={"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)},
    trained_names=r"fourierft_spectrum\.",
    rank_option="fourierft_n_frequency",
    trainable_params={"distilbert": 13_538, "minilm-l6": 12_770},
    starts_as_base=True,
)
