"""P-tuning: virtual-token embeddings put in front of every input, produced by a small trained encoder
(an MLP) from free embeddings (Liu et al., 2021).

The encoder stays frozen; the virtual tokens, their encoder and the QA head train. The saved adapter
holds the encoder's output (peft's format), so a loaded run has no encoder left to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftqa.methods._prompt import prompt_shape, register_prompt


@dataclass
class PTuningOptions:
    num_virtual_tokens: int = field(default=20, metadata={"help": "virtual tokens prepended"})
    p_tuning_hidden_size: int = field(
        # peft's P-tuning examples use 128: the encoder stays a small share of what trains.
        default=128,
        metadata={"help": "hidden size of the MLP that produces the virtual tokens"},
    )


def peft_config(model: Any, options: PTuningOptions) -> Any:
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(
        **prompt_shape(model, options.num_virtual_tokens),
        # The MLP, peft's recommended encoder: Liu et al.'s LSTM is slower and no better in peft's tests.
        encoder_reparameterization_type="MLP",
        encoder_hidden_size=options.p_tuning_hidden_size,
    )


register_prompt(
    "p_tuning",
    "P-tuning: virtual tokens from a trained MLP encoder before the input, QA head trained",
    PTuningOptions,
    peft_config,
    trainable_params={"distilbert": 230_914, "minilm-l6": 123_778},
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=3e-2,
)
