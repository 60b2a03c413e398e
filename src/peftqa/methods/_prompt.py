"""What prompt tuning and P-tuning share: virtual tokens in front of the input, and a model whose logits
and loss cover the real tokens only.

peft's prompt learning prepends `num_virtual_tokens` embeddings to the input, so its QA model's start and
end logits gain that many positions at the front while a batch's start/end positions and its windows'
offsets stay where the tokenizer put them. peft passes the labels on unshifted (the loss then points at
a token `num_virtual_tokens` earlier, and the method learns nothing it can use), and it drops
token_type_ids (they are a named argument of its forward, which looks for them in **kwargs), so BERT
would read every question token as context. `VirtualTokensDropped` runs the same steps itself: prompt
embeddings + word embeddings, the attention mask extended over the prompt, zeros as the prompt's
segment, then the logits of the real tokens and transformers' QA loss on them. The training loop,
scoring, post-processing, export and serving see a model of the input's length, as for every method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from peftqa.errors import PeftqaError
from peftqa.methods._peft import QA_HEAD, register_peft
from peftqa.methods.registry import MethodSpec

# Both methods train the virtual tokens' module (P-tuning's holds its encoder too) and the QA head.
TRAINED_NAMES = r"prompt_encoder\."


def prompt_shape(model: Any, num_virtual_tokens: int) -> dict[str, Any]:
    """The PromptLearningConfig fields peft would guess from the config: DistilBERT's config names them
    dim, n_heads and n_layers, which transformers maps to the names read here but peft does not read."""
    config = model.config
    return {
        "task_type": "QUESTION_ANS",
        "num_virtual_tokens": num_virtual_tokens,
        "token_dim": config.hidden_size,
        "num_transformer_submodules": 1,  # an encoder: one stack takes the prompt
        "num_attention_heads": config.num_attention_heads,
        "num_layers": config.num_hidden_layers,
        "modules_to_save": list(QA_HEAD),
    }


def _attend_to_prompt(mask: torch.Tensor, virtual: int) -> torch.Tensor:
    """The attention mask with the prompt in front, attended by every token: a 2-D mask (1 attends), or
    the 4-D boolean one the training loop gives SDPA (batch, 1, 1, keys)."""
    if mask.ndim == 4 and mask.shape[-2] != 1:
        raise ValueError(f"a 4-D attention mask must have one query row to extend, got {tuple(mask.shape)}")
    if mask.ndim not in (2, 4):
        raise ValueError(f"cannot extend a {mask.ndim}-D attention mask over the prompt")
    # A floating 4-D mask is additive (0 attends); integer and boolean masks attend where they are 1.
    fill = torch.zeros if mask.ndim == 4 and mask.is_floating_point() else torch.ones
    prefix = fill((*mask.shape[:-1], virtual), dtype=mask.dtype, device=mask.device)
    return torch.cat((prefix, mask), dim=-1)


class VirtualTokensDropped(torch.nn.Module):
    """A peft prompt-learning QA model whose logits and loss are those of the input's own tokens."""

    def __init__(self, peft_model: Any) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.virtual_tokens: int = peft_model.active_peft_config.num_virtual_tokens
        # What the rest of peftqa reads from a model: its attention implementation, its config for exports.
        self.config = peft_model.get_base_model().config

    def save_pretrained(self, folder: Path) -> None:
        self.peft_model.save_pretrained(folder)

    def get_base_model(self) -> Any:
        """The transformers model inside (whose forward signature says which inputs it takes)."""
        return self.peft_model.get_base_model()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> Any:
        from transformers.loss.loss_utils import ForQuestionAnsweringLoss
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        virtual = self.virtual_tokens
        longest = getattr(self.config, "max_position_embeddings", None)
        if longest is not None and input_ids.shape[1] + virtual > longest:
            raise PeftqaError(
                f"{input_ids.shape[1]} tokens and {virtual} virtual tokens exceed the model's {longest} positions: "
                "lower --max-length or --num-virtual-tokens"
            )
        words = self.peft_model.word_embeddings(input_ids)
        prompts = self.peft_model.get_prompt(batch_size=input_ids.shape[0]).to(words.dtype)
        inputs: dict[str, torch.Tensor] = {"inputs_embeds": torch.cat((prompts, words), dim=1)}
        if attention_mask is not None:
            inputs["attention_mask"] = _attend_to_prompt(attention_mask, virtual)
        if token_type_ids is not None:
            # The prompt sits before the question, so it takes the question's segment, 0.
            inputs["token_type_ids"] = torch.nn.functional.pad(token_type_ids, (virtual, 0), value=0)
        output = self.peft_model.base_model(**inputs)
        start_logits = output.start_logits[:, virtual:]
        end_logits = output.end_logits[:, virtual:]
        # transformers' own QA loss (mean of the start and end cross-entropies, positions past the input
        # clamped and ignored), on the real tokens.
        loss = ForQuestionAnsweringLoss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


# Prompt tuning needs far higher rates than weight updates (Lester et al. used 0.3 with Adafactor); both
# methods start from the same rate and grids.
DEFAULT_LR = 3e-2
SWEEP_LRS = {"default": (3e-3, 1e-2, 3e-2, 1e-1), "quick": (1e-2, 3e-2, 1e-1)}


def register_prompt(
    name: str,
    description: str,
    options_cls: type,
    peft_config: Callable[[Any, Any], Any],
    trainable_params: Mapping[str, int],
    default_lr: float = DEFAULT_LR,
    sweep_lrs: Mapping[str, tuple[float, ...]] = SWEEP_LRS,
) -> MethodSpec:
    """Register a prompt-learning method whose peft config `peft_config(model, options)` builds.

    Its adapter is peft's own folder (P-tuning's holds the encoder's output, the prompt it gives), and
    loading it leaves the base weights as they are (only the QA head is copied, into peft's wrapper), so
    served runs may share one base.
    """
    return register_peft(
        name,
        description,
        options_cls,
        peft_config,
        default_lr=default_lr,
        sweep_lrs=sweep_lrs,
        trained_names=TRAINED_NAMES,
        # The virtual tokens are embeddings, not a weight matrix: decay would pull them towards zero.
        no_decay=r"prompt_encoder\.default\.embedding\.",
        wrap=VirtualTokensDropped,
        # The prompt changes every logit from the start, and there is nothing to merge into the weights.
        starts_as_base=False,
        merges=False,
        trainable_params=trainable_params,
    )
