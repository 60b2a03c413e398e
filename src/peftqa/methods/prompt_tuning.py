"""Prompt tuning: trainable embeddings of virtual tokens put in front of every input (Lester et al., 2021).

The encoder stays frozen; only the prompt (num_virtual_tokens x hidden size) and the QA head train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.methods._prompt import prompt_shape, register_prompt

# peft's names for the ways the prompt starts.
INITS = {"vocab": "SAMPLE_VOCAB", "text": "TEXT", "random": "RANDOM"}


@dataclass
class PromptTuningOptions:
    num_virtual_tokens: int = field(default=20, metadata={"help": "virtual tokens prepended"})
    prompt_tuning_init: str = field(
        # Embeddings of vocabulary tokens start on the manifold the encoder reads, which Lester et al. found
        # better than random vectors; they need no tokenizer, so this works for every model, offline.
        default="vocab",
        metadata={
            "help": "how the prompt starts: vocab (embeddings of random vocabulary tokens), text (those of "
            "--prompt-tuning-text's tokens, repeated) or random"
        },
    )
    prompt_tuning_text: str = field(
        default="Answer the question:", metadata={"help": "the text a --prompt-tuning-init text prompt starts as"}
    )

    def __post_init__(self) -> None:
        if self.prompt_tuning_init not in INITS:
            raise ValueError(f"prompt_tuning_init must be one of {', '.join(INITS)}, got {self.prompt_tuning_init!r}")
        if not self.prompt_tuning_text.strip():
            raise ValueError("prompt_tuning_text must not be empty")


def _text_init(model: Any, options: PromptTuningOptions) -> dict[str, Any]:
    """The model's own tokenizer (the folder it was loaded from: the run's tokenizer) reads the text;
    a Hub id is read from the local cache, where loading the run put it."""
    source = getattr(model, "name_or_path", "") or ""
    if not source:
        raise PeftqaError("--prompt-tuning-init text needs the model's tokenizer, and this model names no folder")
    return {
        "prompt_tuning_init_text": options.prompt_tuning_text,
        "tokenizer_name_or_path": source,
        "tokenizer_kwargs": {} if Path(source).is_dir() else {"local_files_only": True},
    }


def peft_config(model: Any, options: PromptTuningOptions) -> Any:
    from peft import PromptTuningConfig

    text = _text_init(model, options) if options.prompt_tuning_init == "text" else {}
    return PromptTuningConfig(
        **prompt_shape(model, options.num_virtual_tokens), prompt_tuning_init=INITS[options.prompt_tuning_init], **text
    )


register_prompt(
    "prompt_tuning",
    "prompt tuning: trainable virtual-token embeddings before the input, QA head trained",
    PromptTuningOptions,
    peft_config,
    trainable_params={"distilbert": 16_898, "minilm-l6": 8_450},
    # The rate the quick study's sweep chose on MiniLM-L6 with the QA head at the same rate
    # (docs/results/2026-12-01-every-method.md): not measured with the head at its own rate.
    default_lr=1e-2,
)
