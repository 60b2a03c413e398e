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
    **spec_fields: Any,
) -> MethodSpec:
    """Register a method that is a peft config built from its options: `peft_config(model, options)`.

    Its adapter is saved in peft's own format (`PeftModel.from_pretrained` loads it with no peftqa
    code) and loading it leaves the base weights untouched, so served runs may share one base.
    `spec_fields` are the other MethodSpec fields (trainable_params, starts_as_base, ...); an `apply`
    among them replaces the plain `get_peft_model(model, peft_config(model, options))`, a `load` peft's
    `PeftModel.from_pretrained`.
    """

    def apply(model: Any, options: Any) -> Any:
        from peft import get_peft_model

        return get_peft_model(model, peft_config(model, options))

    return register(
        MethodSpec(
            name=name,
            description=description,
            options_cls=options_cls,
            default_lr=default_lr,
            save=save_adapter,
            artifact=ADAPTER_DIR,
            sweep_lrs=sweep_lrs,
            trained_names=trained_names,
            rank_option=rank_option,
            **{"shares_base": True, "apply": apply, "load": load_adapter, **spec_fields},
        )
    )
