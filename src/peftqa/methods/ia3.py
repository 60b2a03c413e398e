"""(IA)3: learned vectors that rescale keys, values and the feed-forward activation (Liu et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peftqa.methods import MethodSpec, register
from peftqa.methods._peft import ADAPTER_DIR, QA_HEAD, apply_peft, load_adapter, save_adapter, split_modules
from peftqa.methods.targets import IA3_TARGETS, lookup


@dataclass
class IA3Options:
    target_modules: str | None = field(
        default=None,
        metadata={"help": "layers to rescale (comma-separated or a regex); default: keys, values, FF output"},
    )
    feedforward_modules: str | None = field(
        default=None,
        metadata={"help": "those of the targets whose input (not output) is rescaled; default: the FF output"},
    )


def peft_config(model, options: IA3Options):
    from peft import IA3Config

    default_targets, default_feedforward = lookup(IA3_TARGETS, model.config.model_type, "ia3")
    targets = split_modules(options.target_modules) or default_targets
    feedforward = split_modules(options.feedforward_modules)
    if feedforward is None:
        # Named targets without named FF modules: none are feed-forward, which is always consistent.
        feedforward = default_feedforward if options.target_modules is None else []
    return IA3Config(target_modules=targets, feedforward_modules=feedforward, modules_to_save=QA_HEAD)


def apply(model, options: IA3Options):
    return apply_peft(model, peft_config(model, options))


register(
    MethodSpec(
        name="ia3",
        description="(IA)3 on keys, values and the feed-forward activation, QA head trained",
        options_cls=IA3Options,
        default_lr=2e-2,
        apply=apply,
        save=save_adapter,
        load=load_adapter,
        artifact=ADAPTER_DIR,
    )
)
