"""Prefix tuning (Li & Liang, 2021; P-tuning v2, Liu et al., 2022): learned keys and values for
`num_virtual_tokens` extra positions, prepended to every layer's self-attention; the encoder stays frozen.

peft cannot do it here: it hands prefixes over as `past_key_values`, which transformers 5 encoders do
not take. So peftqa adds them in the attention itself. Each self-attention module of the adapted model
reads its attention implementation from a view of the model's config that names `PREFIX_ATTENTION`,
registered with transformers' AttentionInterface: that function puts the layer's prefix before the
keys and values, widens the mask (prefix positions always attended, padding of the real tokens still
masked) and calls the implementation the model's own config names, looked up at call time (so the
fp32-attention lever, which swaps "sdpa" in the registry, applies). The model's own config is left as
it is, so its masks, the training loop's SDPA mask and every other model in the process are unchanged.
Queries are not extended: the logits keep the input's length.

The prefixes live in one `prefix_encoder` module on the model: a (layers, 2, tokens, hidden) tensor,
or with `prefix_projection` an embedding through an MLP (the reparametrisation the papers train with).
The adapter saves the computed prefixes, never the MLP, so a reloaded run is the plain tensor.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from peftqa.checks import NOT_NEGATIVE
from peftqa.errors import PeftqaError
from peftqa.methods._peft import ADAPTER_DIR
from peftqa.methods._weights import load_tensors, save_tensors
from peftqa.methods.registry import MethodSpec, register

PREFIX_ATTENTION = "peftqa_prefix"
WEIGHTS_FILE = "prefix.safetensors"
CONFIG_FILE = "prefix_config.json"
PREFIX_TENSOR = "prefix_encoder.key_values"
ENCODER = "prefix_encoder"
# Model types whose self-attention calls transformers' attention registry (MPNet computes its own).
SUPPORTED = ("bert", "distilbert", "electra", "roberta", "xlm-roberta")


@dataclass
class PrefixOptions:
    num_virtual_tokens: int = field(
        default=20,
        metadata={
            "help": "prefix positions prepended to every layer's keys and values (0: none)",
            "range": NOT_NEGATIVE,
        },
    )
    prefix_projection: bool = field(
        default=False,
        metadata={"help": "train the prefixes through an MLP (reparametrisation); the saved adapter keeps only them"},
    )
    prefix_hidden_size: int = field(default=512, metadata={"help": "hidden width of the prefix MLP"})


class PrefixEncoder(torch.nn.Module):
    """The prefixes of every layer: forward() gives a (layers, 2 (key, value), tokens, hidden) tensor."""

    def __init__(self, layers: int, hidden: int, tokens: int, projection_hidden: int | None, std: float) -> None:
        super().__init__()
        self.shape = (layers, 2, tokens, hidden)
        self.mlp: torch.nn.Module | None = None
        if projection_hidden is None:
            self.key_values = torch.nn.Parameter(torch.randn(self.shape) * std)
        else:
            self.embedding = torch.nn.Parameter(torch.randn(tokens, hidden) * std)
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(hidden, projection_hidden),
                torch.nn.Tanh(),
                torch.nn.Linear(projection_hidden, 2 * layers * hidden),
            )

    def forward(self) -> torch.Tensor:
        if self.mlp is None:
            return self.key_values
        layers, _, tokens, hidden = self.shape
        return self.mlp(self.embedding).view(tokens, layers, 2, hidden).permute(1, 2, 0, 3)


class _PrefixConfig:
    """What a self-attention module reads of its config: the prefix attention as its implementation,
    everything else (and the implementation to call underneath) from the model's own config."""

    _attn_implementation = PREFIX_ATTENTION

    def __init__(self, config: Any) -> None:
        self.base = config

    def __getattr__(self, name: str) -> Any:
        if name == "base" or name.startswith("__"):  # copy and deepcopy probe before `base` is set
            raise AttributeError(name)
        return getattr(self.base, name)


def _widened_mask(mask: torch.Tensor | None, tokens: int) -> torch.Tensor | None:
    """The mask with `tokens` always-attended key positions in front: True in a boolean mask, 0 in an
    additive one. None (attend to everything) stays None. -1 sizes keep the traced graph's axes dynamic."""
    if mask is None:
        return None
    first = mask[..., :1]
    open_positions = torch.ones_like(first) if mask.dtype == torch.bool else torch.zeros_like(first)
    return torch.cat([open_positions.expand(*([-1] * (mask.dim() - 1)), tokens), mask], dim=-1)


def prefixed_attention(module: Any, query, key, value, attention_mask, *args: Any, **kwargs: Any):
    """The registered attention function: the module's layer prefix before its keys and values."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    prefix = module.prefix_source()[module.prefix_layer]  # (2, tokens, hidden)
    batch, heads, _, head_dim = key.shape
    tokens = prefix.shape[1]
    # Split into heads as the model splits its own projections: (tokens, hidden) -> (1, heads, tokens, d).
    prefix_key, prefix_value = (
        part.view(1, tokens, heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1).to(key.dtype) for part in prefix
    )
    key = torch.cat([prefix_key, key], dim=2)
    value = torch.cat([prefix_value, value], dim=2)
    eager = sys.modules[type(module).__module__].eager_attention_forward  # the model family's own
    inner = ALL_ATTENTION_FUNCTIONS.get_interface(module.config.base._attn_implementation, eager)
    return inner(module, query, key, value, _widened_mask(attention_mask, tokens), *args, **kwargs)


def _register_attention() -> None:
    """Add the prefix attention to transformers' registry; at first use, as importing transformers is
    slow and every command imports the methods."""
    from transformers import AttentionInterface

    AttentionInterface.register(PREFIX_ATTENTION, prefixed_attention)


def self_attentions(model: Any) -> list[Any]:
    """The self-attention module of every layer, in order; a one-line error for another architecture."""
    model_type = model.config.model_type
    if model_type not in SUPPORTED:
        raise PeftqaError(f"prefix tuning does not support '{model_type}' models (supported: {', '.join(SUPPORTED)})")
    found = [m for m in model.modules() if type(m).__name__.endswith("SelfAttention")]
    if not found:
        raise PeftqaError(f"prefix tuning found no self-attention layers in this '{model_type}' model")
    return found


def _install(model: Any, tokens: int, projection_hidden: int | None) -> Any:
    """Freeze the encoder, add the prefix encoder and point every self-attention at it; QA head trains."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.qa_outputs.parameters():
        parameter.requires_grad_(True)
    attentions = self_attentions(model)
    hidden = model.qa_outputs.in_features
    std = getattr(model.config, "initializer_range", 0.02)
    encoder = PrefixEncoder(len(attentions), hidden, tokens, projection_hidden, std)
    model.add_module(ENCODER, encoder)
    if tokens == 0:  # no prefix at all: the attention stays the base model's own
        return model
    _register_attention()
    for index, attention in enumerate(attentions):
        # A plain attribute, not a submodule: the prefixes are named once, under `prefix_encoder`.
        object.__setattr__(attention, "prefix_source", encoder)
        attention.prefix_layer = index
        attention.config = _PrefixConfig(attention.config)
    return model


def apply(model: Any, options: PrefixOptions) -> Any:
    projection = options.prefix_hidden_size if options.prefix_projection else None
    return _install(model, options.num_virtual_tokens, projection)


def save(model: Any, run_dir: Path) -> None:
    """The computed prefixes (never the MLP) and the QA head, with the shape to rebuild them."""
    encoder = getattr(model, ENCODER)
    with torch.no_grad():
        state = {PREFIX_TENSOR: encoder().float()}
    state.update({f"qa_outputs.{n}": p for n, p in model.qa_outputs.named_parameters()})
    folder = run_dir / ADAPTER_DIR
    save_tensors(state, folder / WEIGHTS_FILE)
    layers, _, tokens, hidden = encoder.shape
    described = {"num_virtual_tokens": tokens, "layers": layers, "hidden": hidden}
    (folder / CONFIG_FILE).write_text(json.dumps({"model_type": model.config.model_type, **described}, indent=1))


def load(base_model: Any, run_dir: Path) -> Any:
    """The saved prefixes on a fresh base, and the saved QA head in place of its random one."""
    folder = run_dir / ADAPTER_DIR
    saved = json.loads((folder / CONFIG_FILE).read_text())
    model = _install(base_model, int(saved["num_virtual_tokens"]), None)
    if saved["model_type"] != model.config.model_type:
        raise ValueError(f"{WEIGHTS_FILE} does not match this model (saved for '{saved['model_type']}' models)")
    expected = {f"qa_outputs.{name}": p.shape for name, p in model.qa_outputs.named_parameters()}
    state = load_tensors(folder / WEIGHTS_FILE, {PREFIX_TENSOR: getattr(model, ENCODER).shape, **expected})
    model.load_state_dict(state, strict=False)
    return model.eval()


register(
    MethodSpec(
        name="prefix",
        description="prefix tuning (P-tuning v2): learned keys and values in every layer, QA head trained",
        options_cls=PrefixOptions,
        # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
        # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
        default_lr=3e-2,
        sweep_lrs={"default": (1e-3, 3e-3, 1e-2, 3e-2), "quick": (3e-3, 1e-2, 3e-2)},
        trained_names=r"^prefix_encoder\.",
        no_decay=r"^prefix_encoder\.",  # keys and values of extra positions, not a weight matrix
        trainable_params={"distilbert": 185_858, "minilm-l6": 92_930},
        # The prefixes start random: the default model does not answer as the base does.
        starts_as_base=False,
        # The prefix is a set of extra attention positions, not a change of any weight: nothing to fold.
        merges=False,
        # `load` writes the saved QA head into the base model and redirects its attention modules.
        shares_base=False,
        apply=apply,
        save=save,
        load=load,
        artifact=ADAPTER_DIR,
    )
)
