"""BitFit: train only the bias terms of the encoder (and the QA head) (Ben Zaken et al., 2022).

No peft involved: `apply` switches requires_grad, and the adapter is just the trained tensors in one
safetensors file, put back onto a fresh base model by `load`. About 0.1% of the weights train.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftqa.methods._peft import QA_HEAD
from peftqa.methods._weights import base_subset_method
from peftqa.methods.registry import MethodSpec, register

WEIGHTS_FILE = "bitfit.safetensors"


@dataclass
class BitFitOptions:
    """BitFit has no options of its own: every bias trains, with the QA head."""


def is_trained(name: str) -> bool:
    """Bias terms everywhere (attention, feed-forward, LayerNorm) and the whole QA head."""
    return name.endswith(".bias") or name.split(".")[0] in QA_HEAD


register(
    MethodSpec(
        name="bitfit",
        description="BitFit: every bias term of the encoder, QA head trained",
        options_cls=BitFitOptions,
        # LN tuning's rate, for the same kind of per-channel vectors; a memorisation check on MiniLM-L6
        # learned 64 training questions at 1e-2 and not at 2e-3. The quick study's sweep chose 3e-2 with
        # the QA head at the same rate: not a measurement of the biases' own rate.
        default_lr=1e-2,
        sweep_lrs={"default": (3e-4, 1e-3, 3e-3, 1e-2), "quick": (3e-3, 1e-2, 3e-2)},
        trained_names=r"\.bias$",
        trainable_params={"distilbert": 52_994, "minilm-l6": 26_498},
        starts_as_base=True,
        # The saved biases and head replace the base ones in place; every one of them must be there.
        **base_subset_method(is_trained, WEIGHTS_FILE),
    )
)
