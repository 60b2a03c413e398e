"""The parts every peft-based method shares: one `register_peft` call turns an options dataclass and a
function that builds the peft config into a registered method (apply, save and load the adapter).

The QA head (`qa_outputs`) is new for every run, so it is trained and saved with the adapter
(`modules_to_save`); without that a reloaded adapter would sit under a random head.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.methods.registry import MethodSpec, register
from peftqa.methods.targets import lookup

QA_HEAD = ["qa_outputs"]
ADAPTER_DIR = "adapter"


def split_modules(value: str | list[str] | None) -> list[str] | str | None:
    """`--target-modules q_lin,v_lin` -> list; a string with regex characters stays a regex."""
    if value is None or isinstance(value, list):
        return value
    if any(ch in value for ch in "*$^|()\\"):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


def modules_option(help_text: str) -> Any:
    """An option naming layers (`--target-modules`): comma-separated names or a regex, which the options
    compile when they are made (checks.check_fields) and `given_modules` resolves against the model."""
    return dataclasses.field(default=None, metadata={"help": help_text, "regex": True})


def target_modules_option(default: str) -> Any:
    """The `target_modules` field every peft method shares (one flag, --target-modules); `default` says
    which layers the method adapts when it is not given."""
    return modules_option(f"comma-separated layer names or a regex; default: {default}")


def given_modules(model: Any, value: str | None, flag: str = "--target-modules") -> list[str] | str | None:
    """`value` split as peft reads it (split_modules), or None when not given; refused in one line when it
    matches no layer of `model` (peft's rule: a regex matches a whole name, a listed name its last parts)."""
    layers = split_modules(value)
    if layers is None:
        return None
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(layers, str):
        matched = any(re.fullmatch(layers, name) for name in names)
    else:
        matched = any(name == layer or name.endswith(f".{layer}") for name in names for layer in layers)
    if not matched:
        leaves = sorted(
            {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if not any(module.children())}
        )
        raise PeftqaError(f"{flag} {value!r} matches no layer of this model (its layers: {', '.join(leaves)})")
    return layers


def targets(model: Any, options: Any, table: dict, method: str) -> Any:
    """The layers to adapt: `--target-modules` when given, else the table's entry for this architecture."""
    return given_modules(model, options.target_modules) or lookup(table, model.config.model_type, method)


def common_divisor(model: Any, at_most: int | None = None) -> int:
    """The largest size (up to `at_most`, when given) that divides the input and output features of every
    linear layer of the encoder: a block or vector size that fits whichever layers are targeted (peft's
    advice for C3A's block size)."""
    import torch

    features = [
        size
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.startswith(QA_HEAD[0])
        for size in (module.in_features, module.out_features)
    ]
    common = math.gcd(*features)
    if at_most is None:
        return common
    return max(size for size in range(1, min(common, at_most) + 1) if common % size == 0)


def save_adapter(model: Any, run_dir: Path) -> None:
    model.save_pretrained(run_dir / ADAPTER_DIR)


def load_adapter(base_model: Any, run_dir: Path) -> Any:
    """The saved adapter on `base_model`; refused when its weights do not match its adapter_config.json
    (peft only warns, and answers with freshly initialised adapter weights: another model than the run's)."""
    from peft import PeftModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base_model, run_dir / ADAPTER_DIR)
    for warning in caught:
        if "missing adapter keys" in str(warning.message):
            raise PeftqaError(
                f"{run_dir / ADAPTER_DIR}: its weights do not match its adapter_config.json (adapter weights "
                "missing): a damaged or hand-edited folder"
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
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
    `spec_fields` are the other MethodSpec fields (trainable_params, starts_as_base, ...); an `apply`
    among them replaces the plain `get_peft_model(model, peft_config(model, options))`, a `load` peft's
    `PeftModel.from_pretrained`.
    """
    around = wrap or (lambda peft_model: peft_model)

    def apply(model: Any, options: Any) -> Any:
        from peft import get_peft_model

        config = peft_config(model, options)
        try:
            return around(get_peft_model(model, config))
        except ValueError as error:  # options peft cannot apply to this model's layers
            raise PeftqaError(f"{name}: peft cannot apply these options: {' '.join(str(error).split())}") from None

    def load(base_model: Any, run_dir: Path) -> Any:
        return around(load_adapter(base_model, run_dir)).eval()

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
            **{"shares_base": True, "apply": apply, "load": load, **spec_fields},
        )
    )
