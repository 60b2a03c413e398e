"""Full fine-tuning: every weight trains. The reference every PEFT method is judged against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peftqa.methods.registry import MethodSpec, register

MODEL_DIR = "model"


@dataclass
class FullOptions:
    """Full fine-tuning has no options of its own."""


def apply(model, options: FullOptions):
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def save(model, run_dir: Path) -> None:
    model.save_pretrained(run_dir / MODEL_DIR)


def load(base_model, run_dir: Path):
    """The saved weights replace the base ones in place (no second copy of the model is built)."""
    from safetensors.torch import load_file

    state = load_file(run_dir / MODEL_DIR / "model.safetensors")
    base_model.load_state_dict(state, strict=True)
    return base_model.eval()


register(
    MethodSpec(
        name="full",
        description="full fine-tuning (all weights), the reference",
        options_cls=FullOptions,
        default_lr=1e-4,
        # The quick grid is centred on the rate its sweep chose on MiniLM-L6
        # (docs/results/2026-11-27-quick-study.md).
        sweep_lrs={"default": (2e-5, 5e-5, 1e-4, 2e-4), "quick": (2e-4, 4e-4, 8e-4)},
        trained_names=r".",
        trainable_params={"distilbert": 66_364_418, "minilm-l6": 22_566_146},
        starts_as_base=True,
        head_rate="lr",  # one rate for every weight, the fresh head's included, as full fine-tuning is run
        fp32_under_auto=(
            "in bf16 the quick study's sweep chose another of its nearly tied learning rates, and the final run "
            "at it lost F1 (docs/results/2026-12-01-bf16-cpu.md)"
        ),
        apply=apply,
        save=save,
        load=load,
        artifact=MODEL_DIR,
    )
)
