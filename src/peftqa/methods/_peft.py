"""The parts every peft-based method shares: one `register_peft` call turns an options dataclass and a
function that builds the peft config into a registered method (apply, save and load the adapter).

The QA head (`qa_outputs`) is new for every run, so it is trained and saved with the adapter
(`modules_to_save`); without that a reloaded adapter would sit under a random head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftqa.methods.registry import MethodSpec, register

QA_HEAD = ["qa_outputs"]
ADAPTER_DIR = "adapter"


def split_modules(value: str | list[str] | None) -> list[str] | str | None:
    """`--target-modules q_lin,v_lin` -> list; a string with regex characters stays a regex."""
    if value is None or isinstance(value, list):
        return value
    if any(ch in value for ch in "*$^|()\\"):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


def save_adapter(model: Any, run_dir: Path) -> None:
    model.save_pretrained(run_dir / ADAPTER_DIR)


def load_adapter(base_model: Any, run_dir: Path) -> Any:
    from peft import PeftModel

    model = PeftModel.from_pretrained(base_model, run_dir / ADAPTER_DIR)
    return model.eval()


def register_peft(
    name: str,
    description: str,
    options_cls: type,
    peft_config: Callable[[Any, Any], Any],
    default_lr: float,
    sweep_lrs: Mapping[str, tuple[float, ...]],
    trained_names: str,
    rank_option: str | None = None,
    wrap: Callable[[Any], Any] | None = None,
    **spec_fields: Any,
) -> MethodSpec:
    """Register a method that is a peft config built from its options: `peft_config(model, options)`.

    Its adapter is saved in peft's own format (`PeftModel.from_pretrained` loads it with no peftqa
    code) and loading it leaves the base weights untouched, so served runs may share one base.
    `wrap`, when given, puts a module around the peft model that `apply` and `load` return (one that
    changes its forward, and saves through the peft model's `save_pretrained`).
    `spec_fields` are the other MethodSpec fields (trainable_params, starts_as_base, ...).
    """
    around = wrap or (lambda peft_model: peft_model)

    def apply(model: Any, options: Any) -> Any:
        from peft import get_peft_model

        return around(get_peft_model(model, peft_config(model, options)))

    def load(base_model: Any, run_dir: Path) -> Any:
        return around(load_adapter(base_model, run_dir)).eval()

    return register(
        MethodSpec(
            name=name,
            description=description,
            options_cls=options_cls,
            default_lr=default_lr,
            apply=apply,
            save=save_adapter,
            load=load,
            artifact=ADAPTER_DIR,
            sweep_lrs=sweep_lrs,
            trained_names=trained_names,
            rank_option=rank_option,
            **{"shares_base": True, **spec_fields},
        )
    )
