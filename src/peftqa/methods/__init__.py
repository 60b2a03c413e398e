"""The method registry: one entry per fine-tuning method, keyed by its lowercase name.

A method is a `MethodSpec`: an options dataclass (its command-line flags are made from the fields),
a default learning rate that works, the learning-rate grids its sweeps search, and three functions:
`apply` (base model -> trainable model), `save` and `load`. Nothing else in peftqa branches on a
method's name: the training loop, sweeps, studies and the web page read what they need from the spec.
Adding a method is one new module that calls `registry.register(...)` (or `_peft.register_peft(...)`
for a peft config) and one import line below. The spec and the registry live in `registry`.
"""

from peftqa.methods import (  # noqa: F401  (each registers itself)
    adalora,
    bitfit,
    boft,
    c3a,
    dora,
    fourierft,
    full,
    head,
    houlsby,
    hra,
    ia3,
    ln_tuning,
    loha,
    lokr,
    lora,
    miss,
    oft,
    p_tuning,
    parallel,
    peft_file,
    pfeiffer,
    prefix,
    prompt_tuning,
    randlora,
    road,
    rslora,
    shira,
    vblora,
    vera,
)
from peftqa.methods.registry import METHODS, MethodSpec, get_method, method_names, methods_in_all, register

__all__ = [
    "METHODS",
    "MethodSpec",
    "get_method",
    "method_names",
    "methods_in_all",
    "register",
]
