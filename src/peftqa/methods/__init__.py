"""The method registry: one entry per fine-tuning method, keyed by its lowercase name.

A method is a `MethodSpec`: an options dataclass (its command-line flags are made from the fields),
a default learning rate that works, and three functions: `apply` (base model -> trainable model),
`save` and `load`. The training loop never branches on a method's name. Adding a method is one new
module that calls `register(...)` and one import line at the bottom of this file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError


@dataclass(frozen=True)
class MethodSpec:
    """Everything the rest of peftqa needs to know about one method."""

    name: str
    description: str
    options_cls: type  # a dataclass; every field has a default and metadata={"help": ...}
    default_lr: float  # a learning rate that works on DistilBERT and BERT-family encoders
    apply: Callable[[Any, Any], Any]  # (base QA model, options) -> model whose trainable params are the method's
    save: Callable[[Any, Path], None]  # (trained model, run dir): writes `artifact` under the run dir
    load: Callable[[Any, Path], Any]  # (base QA model, run dir) -> trained model, eval mode
    artifact: str  # the folder in the run dir: "adapter" or "model"

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """The options dataclass from a dict, rejecting keys this method does not have."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.options_cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise PeftqaError(f"{flags} does not apply to method '{self.name}' (its options: {sorted(known)})")
        try:
            return self.options_cls(**values)
        except (TypeError, ValueError) as error:
            raise PeftqaError(f"method '{self.name}': {error}") from error


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; fails at import on a bad or repeated name so mistakes cannot hide."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        raise ValueError(f"method name {spec.name!r} must be lowercase letters, digits or _")
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    if not dataclasses.is_dataclass(spec.options_cls):
        raise ValueError(f"method {spec.name!r}: options_cls must be a dataclass")
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The method called `name`, or a PeftqaError listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise PeftqaError(f"unknown method '{name}'; known methods: {', '.join(sorted(METHODS))}") from None


def method_names() -> list[str]:
    return sorted(METHODS)


# One import per method: each module registers itself.
from peftqa.methods import bitfit, dora, full, ia3, lora, rslora, vera  # noqa: E402, F401
