"""MethodSpec and the registry it is kept in: what the rest of peftqa knows about a method."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftqa.checks import COUNT, check_values
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
    # Learning rates a sweep tries, by grid name: "default" (`peftqa sweep`, the seed and full studies)
    # and "quick" (`study --preset quick`: short runs, where a slow rate has little time to move).
    sweep_lrs: Mapping[str, tuple[float, ...]]
    trained_names: str  # regex of the parameter names the method trains, besides the QA head
    rank_option: str | None = None  # the options field a sweep's --ranks sets (e.g. lora_r); None: no rank
    # True when `load` leaves the base model's tensors untouched (an unmerged peft adapter), so the web
    # page may share one base among several runs; False when it writes into the base (full, bitfit).
    shares_base: bool = False
    # Why `--precision auto` trains this method in fp32 where it would choose bf16; None: it follows
    # the hardware. An explicit --precision bf16 still applies.
    fp32_under_auto: str | None = None
    # Called by the training loop after every optimiser step, before the gradients are cleared, with
    # (model, step, total_steps), step the index of the step just taken (from 0): for a method that
    # adjusts itself while it trains (AdaLoRA reallocates its ranks from the gradients). It runs inside
    # the step loop, so it must not read values from the device. None: nothing to do.
    after_optimizer_step: Callable[[Any, int, int], None] | None = None
    # State a method keeps outside the model's parameters while it trains (AdaLoRA's importance
    # scores), so that --resume continues it: `training_state(model)` gives it for the checkpoint (a
    # dict that torch.save can write) and `restore_training_state(model, state)` puts it back into a
    # model rebuilt by `apply`. None: the parameters and the optimiser are the whole state.
    training_state: Callable[[Any], dict[str, Any]] | None = None
    restore_training_state: Callable[[Any, dict[str, Any]], None] | None = None
    # Options that make this method runnable when it has no usable defaults (peft's --peft-config must
    # name a file): the registry-wide tests and the trainable_params counts use them. None: the defaults.
    example_options: Mapping[str, Any] | None = None
    # Whether `--methods all` (a study) trains it: False for a method that needs options of the user's.
    in_all: bool = True
    # What run.json records of the method beyond its options (`method_details`), from the options: a
    # method whose options name a file records what the file held. Its "label", when there is one,
    # names the method's runs in reports ("peft (LoHa config)"). None: nothing more.
    run_details: Callable[[Any], dict[str, Any]] | None = None
    # Whether `peftqa export --format hf` can give a plain transformers model: peft merges the update
    # into the base weights, or the method trains base weights itself (full, bitfit). False for methods
    # that add modules of their own (bottleneck adapters, prefixes): those export as ONNX (a traced graph).
    merges: bool = True
    # Whether the adapted model's logits equal the base model's before any training (the update starts
    # at zero or one, or the method changes nothing until it trains); the tests check it where True.
    starts_as_base: bool = False
    # Trainable parameters with the default options, the QA head included, on the shapes of
    # distilbert-base-uncased ("distilbert") and MiniLM-L6 ("minilm-l6"): what a user weighs when choosing
    # (`peftqa methods`). tests/test_methods.py counts them on models of those shapes.
    trainable_params: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Rates of the method's own tensors relative to its learning rate: parameter-name regex -> multiplier
    # (the first that matches), for a method whose tensors want different rates (VB-LoRA's vector bank).
    lr_scales: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Parameter names (a regex) AdamW does not decay besides biases and LayerNorms: tensors of rank 2 or
    # more that are not weight matrices (circulant kernels, scale vectors, prompts), which decay would
    # pull towards zero instead of towards the base model.
    no_decay: str | None = None
    # The rate the QA head trains at. "head_lr": the run's head_lr, so that a sweep of the method's rate
    # does not also sweep the freshly initialised head. "lr": the method's own rate unless head_lr is
    # given (full fine-tuning: one rate for every weight). "only": the head is all the method trains, so
    # the method's rate is the head's and a head_lr is refused.
    head_rate: str = "head_lr"

    def lr_grid(self, name: str = "default") -> list[float]:
        """The sweep grid called `name` (the default grid when the method has no grid of that name)."""
        return sorted(self.sweep_lrs.get(name) or self.sweep_lrs["default"])

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """The options dataclass from a dict, rejecting keys this method does not have and values out of
        their range (peftqa.checks)."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.options_cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise PeftqaError(f"{flags} does not apply to method '{self.name}' (its options: {sorted(known)})")
        # Every number finite and in its field's range (a whole number without one: a size, rank or
        # count, at least 1), every layer regex compiled: now, before any model loads, and before the
        # options' own __post_init__ relates them.
        check_values(self.options_cls, values, whole_numbers=COUNT)
        try:
            return self.options_cls(**values)
        except (TypeError, ValueError) as error:
            raise PeftqaError(f"method '{self.name}': {error}") from error


METHODS: dict[str, MethodSpec] = {}

# The QA head's parameters under every wrapper: plain (qa_outputs.weight), a peft module to save
# (...qa_outputs.modules_to_save.default.weight), LN tuning's copy and the prompt methods' wrapper.
HEAD_RATES = ("head_lr", "lr", "only")  # MethodSpec.head_rate's values
QA_HEAD_PARAMETER = re.compile(r"(^|\.)qa_outputs\.")


def is_qa_head(name: str) -> bool:
    """Whether the parameter called `name` belongs to the QA head (`qa_outputs`) rather than the method."""
    return QA_HEAD_PARAMETER.search(name) is not None


# The backbones whose shapes MethodSpec.trainable_params counts on, and their total parameters (QA head
# included), so a table can say what share of the model a method trains.
COUNTED_ON: dict[str, int] = {"distilbert": 66_364_418, "minilm-l6": 22_566_146}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; fails at import on a bad or repeated name so mistakes cannot hide."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        raise ValueError(f"method name {spec.name!r} must be lowercase letters, digits or _")
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    if not dataclasses.is_dataclass(spec.options_cls):
        raise ValueError(f"method {spec.name!r}: options_cls must be a dataclass")
    if "default" not in spec.sweep_lrs or not all(spec.sweep_lrs.values()):
        raise ValueError(f"method {spec.name!r}: sweep_lrs needs a non-empty 'default' grid")
    if spec.rank_option is not None and spec.rank_option not in {f.name for f in dataclasses.fields(spec.options_cls)}:
        raise ValueError(f"method {spec.name!r}: rank_option {spec.rank_option!r} is not one of its options")
    if spec.head_rate not in HEAD_RATES:
        raise ValueError(f"method {spec.name!r}: head_rate must be one of {HEAD_RATES}, got {spec.head_rate!r}")
    if any(not scale > 0 for scale in spec.lr_scales.values()):
        raise ValueError(f"method {spec.name!r}: lr_scales must be positive multipliers")
    for pattern in (*spec.lr_scales, *([spec.no_decay] if spec.no_decay else [])):
        re.compile(pattern)  # a bad regex fails at import, not at the first optimiser
    if set(spec.trainable_params) != set(COUNTED_ON):
        raise ValueError(f"method {spec.name!r}: trainable_params needs a count for each of {COUNTED_ON}")
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


def methods_in_all() -> list[str]:
    """The methods `--methods all` means: every registered one that runs with its default options."""
    return sorted(name for name, spec in METHODS.items() if spec.in_all)


def trains_only_the_head(method: str) -> bool:
    """Whether `method` is the floor every other method is judged against: its runs train the QA head alone."""
    return method in METHODS and METHODS[method].head_rate == "only"


def method_label(method: str, details: Mapping[str, Any] | None) -> str:
    """How reports name a run of `method` whose run.json records `details` (MethodSpec.run_details)."""
    return str((details or {}).get("label") or method)
