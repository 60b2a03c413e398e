"""Bottleneck adapters, the machinery the houlsby, pfeiffer and parallel methods share.

An adapter is a small two-layer network inside every encoder layer: a down-projection d -> d/r, a
non-linearity, an up-projection d/r -> d (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning
for NLP"). The variants differ only in where it sits:

- sequential on the sub-layer's output (houlsby): h + adapter(h), before the sub-layer's residual add
  and LayerNorm, which then compute LN(h + adapter(h) + x). The target linear layer is wrapped
  (`BottleneckWrapped`). AdapterHub's DoubleSeqBnConfig.
- sequential on the normalised residual stream (pfeiffer, AdapterHub's SeqBnConfig): the adapter reads
  LN(h + x), the feed-forward output with its block's input x, and the block computes
  LN(h + adapter(LN(h + x)) + x) (`SeqBnWrapped`, with `FeedForwardInput` passing x on).
- parallel (He et al., 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning"):
  beside the feed-forward block, FFN(x) + s * adapter(x), x the block's input. The block's first linear
  layer is wrapped to pass its input on (`FeedForwardInput`), its last one to add the adapter
  (`ParallelWrapped`); both are plain modules, so the adapted model traces to ONNX as it is.

peft has no bottleneck adapters (and AdapterHub's `adapters` pins an older transformers), so they are
built here. The wrappers keep the base layer's own weight and bias tensors under the base's parameter
names, so only `.adapter.` parameters are new. The up-projection starts at zero, so the adapted model
computes exactly the base model until it trains. Adapters cannot be folded into the base weights (the
non-linearity sits between the projections): a run exports as ONNX, not as a plain transformers folder.

Saved under the run's adapter/: the adapter and QA head tensors (safetensors) and a JSON file with the
method and its options, from which `load` rebuilds the same adapters on a fresh base.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from peftqa.errors import PeftqaError
from peftqa.methods._peft import ADAPTER_DIR, QA_HEAD
from peftqa.methods._weights import load_tensors, save_tensors
from peftqa.methods.registry import MethodSpec, register

WEIGHTS_FILE = "bottleneck.safetensors"
CONFIG_FILE = "bottleneck.json"
NON_LINEARITIES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}
NON_LINEARITY_NAMES = ", ".join(NON_LINEARITIES)
# Houlsby et al. draw the projections from a zero-mean normal with a small deviation, so that each
# adapter starts near the identity; the up-projection is zero here, which makes the start exact.
DOWN_INIT_STD = 1e-2
TRAINED_NAMES = r"\.adapter\.(down|up)\."
# Both learning-rate grids are LoRA's: a comparable count of fresh parameters, the update starting at zero.
SWEEP_LRS = {"default": (1e-4, 3e-4, 1e-3, 3e-3), "quick": (1e-3, 3e-3, 1e-2)}


@dataclass(frozen=True)
class Places:
    """Where the adapters go in one encoder layer: module paths relative to the layer."""

    attention_output: str  # the attention block's output projection
    ffn_input: str  # the feed-forward block's first linear layer (its input is the block's input)
    ffn_output: str  # the feed-forward block's last linear layer
    ffn_norm: str  # the LayerNorm after the feed-forward block's residual add


_BERT_PLACES = Places("attention.output.dense", "intermediate.dense", "output.dense", "output.LayerNorm")
PLACES = {
    "distilbert": Places("attention.out_lin", "ffn.lin1", "ffn.lin2", "output_layer_norm"),
    "bert": _BERT_PLACES,
    "roberta": _BERT_PLACES,
    "xlm-roberta": _BERT_PLACES,
    "electra": _BERT_PLACES,
    "mpnet": Places("attention.attn.o", "intermediate.dense", "output.dense", "output.LayerNorm"),
}


def non_linearity_field(default: str) -> Any:
    """The `adapter_non_linearity` option with a variant's default (`peftqa methods NAME` shows each one's)."""
    help_text = f"bottleneck adapters' non-linearity: {NON_LINEARITY_NAMES}"
    return field(default=default, metadata={"help": help_text})


def reduction_factor_field(default: int) -> Any:
    """The `reduction_factor` option with a variant's default (the help text is the same for all)."""
    return field(
        default=default,
        metadata={"help": "bottleneck adapters: hidden size / adapter size (the adapter is d -> d/r -> d)"},
    )


@dataclass
class BottleneckOptions:
    """The options every variant has. ReLU is the default of Pfeiffer et al. and He et al.; the houlsby
    module sets its own."""

    reduction_factor: int = reduction_factor_field(16)
    adapter_non_linearity: str = non_linearity_field("relu")

    def __post_init__(self) -> None:
        if self.adapter_non_linearity not in NON_LINEARITIES:
            raise ValueError(
                f"adapter_non_linearity must be one of {NON_LINEARITY_NAMES}, got {self.adapter_non_linearity!r}"
            )


class BottleneckAdapter(nn.Module):
    """scaling * up(non_linearity(down(x))): d -> max(1, d // reduction_factor) -> d, zero at the start."""

    def __init__(self, size: int, reduction_factor: int, non_linearity: str, scaling: float = 1.0) -> None:
        super().__init__()
        bottleneck = max(1, size // reduction_factor)
        self.down = nn.Linear(size, bottleneck)
        self.non_linearity = NON_LINEARITIES[non_linearity]()
        self.up = nn.Linear(bottleneck, size)
        self.scaling = scaling
        nn.init.normal_(self.down.weight, std=DOWN_INIT_STD)
        for tensor in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.non_linearity(self.down(hidden)))


class _LinearWeights(nn.Module):
    """A base linear layer's own weight and bias, under the names they had (nothing is copied)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def base(self, hidden: torch.Tensor) -> torch.Tensor:
        return functional.linear(hidden, self.weight, self.bias)


class BottleneckWrapped(_LinearWeights):
    """A sequential adapter on a linear layer's output: h = linear(x); h + adapter(h)."""

    def __init__(self, linear: nn.Linear, adapter: BottleneckAdapter) -> None:
        super().__init__(linear)
        self.adapter = adapter

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        output = self.base(hidden)
        return output + self.adapter(output)


class _BlockInput:
    """The feed-forward block's input, from its first linear layer to its last one. A plain object, not
    a module, so the pair shares it without registering anything twice."""

    def __init__(self) -> None:
        self.tensor: torch.Tensor | None = None


class FeedForwardInput(_LinearWeights):
    """The feed-forward block's first linear layer, unchanged, keeping its input for `ParallelWrapped`."""

    def __init__(self, linear: nn.Linear, block_input: _BlockInput) -> None:
        super().__init__(linear)
        self.block_input = block_input

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.block_input.tensor = hidden
        return self.base(hidden)


class SeqBnWrapped(_LinearWeights):
    """The feed-forward block's last linear layer with AdapterHub's SeqBn adapter: h + adapter(LN(h + x)),
    h the layer's output, x the block's input and LN the block's own LayerNorm, which the layer then
    applies to (that + x)."""

    layer_norm: Callable[[torch.Tensor], torch.Tensor]

    def __init__(
        self, linear: nn.Linear, adapter: BottleneckAdapter, block_input: _BlockInput, layer_norm: nn.Module
    ) -> None:
        super().__init__(linear)
        self.adapter = adapter
        self.block_input = block_input
        # The block's own LayerNorm, used here too but registered (and trained, saved) only where it is.
        object.__setattr__(self, "layer_norm", layer_norm)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        output = self.base(hidden)
        return output + self.adapter(self.layer_norm(output + _taken(self.block_input)))


def _taken(block_input: _BlockInput) -> torch.Tensor:
    """The feed-forward block's input, given up once read (not kept past the forward)."""
    tensor, block_input.tensor = block_input.tensor, None
    if tensor is None:
        raise RuntimeError("the feed-forward block's first layer did not run before its last one")
    return tensor


class ParallelWrapped(_LinearWeights):
    """The feed-forward block's last linear layer plus the scaled adapter of the block's input:
    FFN(x) + s * adapter(x)."""

    def __init__(self, linear: nn.Linear, adapter: BottleneckAdapter, block_input: _BlockInput) -> None:
        super().__init__(linear)
        self.adapter = adapter
        self.block_input = block_input

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.base(hidden) + self.adapter(_taken(self.block_input))


def _layer_modules(model: nn.Module, relative: str) -> list[tuple[str, nn.Linear]]:
    """(name, module) of `relative` in every encoder layer (`...layer.N.<relative>`), in order."""
    pattern = re.compile(rf".*\blayer\.\d+\.{re.escape(relative)}")
    found = [(name, module) for name, module in model.named_modules() if pattern.fullmatch(name)]
    if not found or not all(isinstance(module, nn.Linear) for _, module in found):
        raise PeftqaError(f"this model has no linear layers '{relative}' in its encoder layers for bottleneck adapters")
    return found


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def places_for(model: Any, method: str) -> Places:
    """The model's adapter places, or a one-line error naming the architectures that have some."""
    model_type = model.config.model_type
    if model_type not in PLACES:
        raise PeftqaError(
            f"{method} adapters have no placement for '{model_type}' models (known: {', '.join(sorted(PLACES))})"
        )
    return PLACES[model_type]


def add_adapters(model: Any, method: str, sites: tuple[str, ...], options: Any) -> Any:
    """Freeze the model, put an adapter at each of `sites` of every layer ("attention" and "ffn": on the
    sub-layer's output; "ffn_seq_bn": on LN(h + x) after the feed-forward block; "parallel_ffn": beside
    it), and let only the adapters and the QA head train."""
    places = places_for(model, method)
    model.requires_grad_(False)
    make = {"reduction_factor": options.reduction_factor, "non_linearity": options.adapter_non_linearity}
    for site in sites:
        if site in ("attention", "ffn"):
            relative = places.attention_output if site == "attention" else places.ffn_output
            for name, linear in _layer_modules(model, relative):
                adapter = BottleneckAdapter(linear.out_features, **make).to(linear.weight.device)
                _replace(model, name, BottleneckWrapped(linear, adapter))
            continue
        inputs, outputs = _layer_modules(model, places.ffn_input), _layer_modules(model, places.ffn_output)
        for (input_name, first), (output_name, last) in zip(inputs, outputs, strict=True):
            block_input = _BlockInput()
            _replace(model, input_name, FeedForwardInput(first, block_input))
            if site == "parallel_ffn":
                adapter = BottleneckAdapter(first.in_features, **make, scaling=options.adapter_scaling)
                wrapped: nn.Module = ParallelWrapped(last, adapter.to(last.weight.device), block_input)
            else:
                layer_norm = model.get_submodule(output_name.removesuffix(places.ffn_output) + places.ffn_norm)
                adapter = BottleneckAdapter(last.out_features, **make).to(last.weight.device)
                wrapped = SeqBnWrapped(last, adapter, block_input, layer_norm)
            _replace(model, output_name, wrapped)
    for head in QA_HEAD:
        getattr(model, head).requires_grad_(True)
    return model


def is_saved(name: str) -> bool:
    """The tensors a run saves: every adapter's and the QA head's."""
    return re.search(TRAINED_NAMES, name) is not None or name.split(".")[0] in QA_HEAD


def save_adapters(model: Any, run_dir: Path, method: str, options: Any, sites: tuple[str, ...]) -> None:
    folder = run_dir / ADAPTER_DIR
    save_tensors({name: p for name, p in model.named_parameters() if is_saved(name)}, folder / WEIGHTS_FILE)
    described = {"method": method, "model_type": model.config.model_type, "options": dataclasses.asdict(options)}
    described["sites"] = list(sites)
    (folder / CONFIG_FILE).write_text(json.dumps(described, indent=1) + "\n", encoding="utf-8")


def saved_adapters(
    run_dir: Path, method: str, options_cls: type, sites_before: tuple[str, ...]
) -> tuple[Any, tuple[str, ...]]:
    """The options and sites the run's adapters were made with (adapter/bottleneck.json); a file that
    names no sites was written when the method placed its adapters at `sites_before`."""
    described = json.loads((run_dir / ADAPTER_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    if described.get("method") != method:
        raise ValueError(f"{CONFIG_FILE} holds '{described.get('method')}' adapters, not {method}")
    return options_cls(**described["options"]), tuple(described.get("sites") or sites_before)


def load_adapters(model: Any, run_dir: Path) -> Any:
    """Put the saved adapter and head tensors into a model the same adapters were just added to."""
    expected = {name: p.shape for name, p in model.named_parameters() if is_saved(name)}
    model.load_state_dict(load_tensors(run_dir / ADAPTER_DIR / WEIGHTS_FILE, expected), strict=False)
    return model.eval()


def register_bottleneck(
    name: str,
    description: str,
    options_cls: type,
    sites: tuple[str, ...],
    trainable_params: Mapping[str, int],
    default_lr: float,
    sweep_lrs: Mapping[str, tuple[float, ...]] = SWEEP_LRS,
    sites_before: tuple[str, ...] | None = None,
) -> MethodSpec:
    """Register a bottleneck variant: adapters at `sites` of every layer (see `add_adapters`). A run saved
    before its adapters moved to `sites` (its bottleneck.json names none) reloads at `sites_before`,
    where it was trained."""

    def build(model: Any, options: Any, where: tuple[str, ...]) -> Any:
        model = add_adapters(model, name, where, options)
        model.bottleneck_options, model.bottleneck_sites = options, where  # what `save` writes beside the weights
        return model

    def apply(model: Any, options: Any) -> Any:
        return build(model, options, sites)

    def save(model: Any, run_dir: Path) -> None:
        save_adapters(model, run_dir, name, model.bottleneck_options, model.bottleneck_sites)

    def load(base_model: Any, run_dir: Path) -> Any:
        options, where = saved_adapters(run_dir, name, options_cls, sites_before or sites)
        return load_adapters(build(base_model, options, where), run_dir)

    return register(
        MethodSpec(
            name=name,
            description=description,
            options_cls=options_cls,
            default_lr=default_lr,
            apply=apply,
            save=save,
            load=load,
            artifact=ADAPTER_DIR,
            sweep_lrs=sweep_lrs,
            trained_names=TRAINED_NAMES,
            merges=False,
            shares_base=False,
            starts_as_base=True,
            trainable_params=trainable_params,
        )
    )
