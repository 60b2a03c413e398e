"""What makes an export trustworthy: the adapter merged into plain weights, and the logits of the
merged, saved or traced model compared with the run's on real windows."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from peftqa.errors import PeftqaError
from peftqa.model.onnx_runtime import OnnxQAModel

# Largest start/end logit difference accepted between merged or saved weights and the run (float
# rounding of W + BA against Wx + BAx).
MERGE_ATOL = 1e-4
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def merge_model(model: Any) -> Any:
    """The model with its adapter folded into the weights: a plain transformers model, no peft layers.

    full and bitfit runs are plain already. peft's merge writes into the base weights it wraps, so the
    model must own them (not the web page's shared base).
    """
    if hasattr(model, "merge_and_unload"):
        try:
            model = model.merge_and_unload()
        except (ValueError, NotImplementedError, RuntimeError, AttributeError) as error:
            raise PeftqaError(f"this adapter cannot be merged into its base weights ({error})") from error
    left = [name for name, _ in model.named_modules() if "base_layer" in name or "lora_" in name or "ia3_" in name]
    if left:
        raise PeftqaError(f"merging left adapter layers behind ({left[0]}): this method cannot be exported")
    return model.eval()


def probe_batch(tokenizer: Any, scoring: Any, rows: int = 8) -> dict[str, Any]:
    """Real windows to compare logits on: the shipped SQuAD dev examples cut with the run's windows,
    `rows` of them of different lengths in one padded batch (padding is where exports go wrong)."""
    import torch

    from peftqa.data import Example, load_examples
    from peftqa.features.batches import collate
    from peftqa.features.windows import build_features

    examples = [Example(item["id"], item["question"], item["context"], (), ()) for item in load_examples()["examples"]]
    features = build_features(examples, tokenizer, scoring.max_length, scoring.doc_stride)
    # Longest and shortest windows of every example, up to `rows`.
    order = np.argsort(-features.lengths, kind="stable")
    chosen = sorted({int(order[0]), int(order[-1]), *map(int, order[:: max(1, len(order) // rows)])})[:rows]
    batch = collate(features, chosen, tokenizer.pad_token_id, torch.device("cpu"))
    return {name: batch[name] for name in _INPUT_NAMES if name in batch}


def accepted_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The inputs of `batch` that the model's forward takes (DistilBERT has no token_type_ids)."""
    if isinstance(model, OnnxQAModel):
        accepted = model.input_names
    else:
        # A peft wrapper's forward takes **kwargs: ask the transformers model inside it.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        accepted = list(inspect.signature(inner.forward).parameters)
    return {name: value for name, value in batch.items() if name in accepted}


def logits(model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits of a PyTorch (or ONNX-wrapped) model on a batch, as float32 arrays."""
    import torch

    with torch.inference_mode():
        output = model(**accepted_inputs(model, batch))
    return output.start_logits.float().numpy(), output.end_logits.float().numpy()


def largest_difference(first: tuple[np.ndarray, ...], second: tuple[np.ndarray, ...], mask: np.ndarray) -> float:
    """The largest absolute start/end logit difference over real (unpadded) tokens."""
    real = mask.astype(bool)
    return max(float(np.abs(a - b)[real].max()) for a, b in zip(first, second, strict=True))


def checked_difference(
    model: Any, reference: tuple[np.ndarray, ...], batch: dict[str, Any], limit: float, what: str
) -> float:
    """The largest logit difference of `model` from `reference` on `batch`, refused above `limit`.

    Args:
        what: "X's logits differ from Y's", completed in the error with the difference and the limit.
    """
    difference = largest_difference(logits(model, batch), reference, batch["attention_mask"].numpy())
    if difference > limit:
        raise PeftqaError(f"{what} by {difference:.2e} (> {limit})")
    return difference
