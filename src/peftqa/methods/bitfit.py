"""BitFit: train only the bias terms of the encoder (and the QA head) (Ben Zaken et al., 2022).

No peft involved: `apply` switches requires_grad, and the adapter is just the trained tensors in one
safetensors file, put back onto a fresh base model by `load`. About 0.1% of the weights train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peftqa.methods._peft import ADAPTER_DIR, QA_HEAD
from peftqa.methods._weights import load_tensors, save_tensors
from peftqa.methods.registry import MethodSpec, register

WEIGHTS_FILE = "bitfit.safetensors"


@dataclass
class BitFitOptions:
    """BitFit has no options of its own: every bias trains, with the QA head."""


def is_trained(name: str) -> bool:
    """Bias terms everywhere (attention, feed-forward, LayerNorm) and the whole QA head."""
    return name.endswith(".bias") or name.split(".")[0] in QA_HEAD


def apply(model, options: BitFitOptions):
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(is_trained(name))
    return model


def save(model, run_dir: Path) -> None:
    save_tensors({n: p for n, p in model.named_parameters() if is_trained(n)}, run_dir / ADAPTER_DIR / WEIGHTS_FILE)


def load(base_model, run_dir: Path):
    """The saved biases and head replace the base ones in place; every one of them must be there."""
    expected = {name: p.shape for name, p in base_model.named_parameters() if is_trained(name)}
    base_model.load_state_dict(load_tensors(run_dir / ADAPTER_DIR / WEIGHTS_FILE, expected), strict=False)
    return base_model.eval()


register(
    MethodSpec(
        name="bitfit",
        description="BitFit: every bias term of the encoder, QA head trained",
        options_cls=BitFitOptions,
        default_lr=2e-3,
        # The quick grid reaches up to the rate its quick sweep chose on MiniLM-L6, 3e-2, where one point past
        # it scored lower (docs/results/2026-12-01-every-method.md).
        sweep_lrs={"default": (3e-4, 1e-3, 3e-3, 1e-2), "quick": (3e-3, 1e-2, 3e-2)},
        trained_names=r"\.bias$",
        trainable_params={"distilbert": 52_994, "minilm-l6": 26_498},
        starts_as_base=True,
        apply=apply,
        save=save,
        load=load,
        artifact=ADAPTER_DIR,
    )
)
