"""Forward passes: a batch's span loss, and start/end logits over a whole feature set.

Scoring batches are `batches.collate`'s: features of similar length (longest first), padded only to
their longest row; the logits come back in the feature set's own order.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from tqdm.auto import tqdm

from peftqa.features.batches import collate
from peftqa.features.windows import FeatureSet


def autocast_for(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on `device` when `bf16`, else plain fp32 (evaluation's default, on every device,
    so that scores compare across machines)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def eval_batch_size_for(device: torch.device) -> int:
    """Features per forward pass when scoring, unless the run says otherwise.

    A GPU wants large batches; a CPU is faster with small ones that stay in its caches
    (docs/results/2026-11-27-cpu-speed.md).
    """
    return 64 if device.type == "cuda" else 16


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    attention_mask: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """Mean of the start and end cross-entropies over the real tokens of each row.

    The models' own QA loss also gives probability to padding positions, so the scored loss would
    change with how rows are batched (a CPU scores in batches of 16, a GPU of 64); here it does not.
    """
    padding = attention_mask == 0
    start = torch.nn.functional.cross_entropy(start_logits.masked_fill(padding, float("-inf")), start_positions)
    end = torch.nn.functional.cross_entropy(end_logits.masked_fill(padding, float("-inf")), end_positions)
    return (start + end) / 2


@torch.inference_mode()
def predict_logits(
    model,
    features: FeatureSet,
    batch_size: int | None,
    pad_token_id: int,
    bf16: bool = False,
    progress: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Start and end logits per feature row (each as long as its row) and the mean loss.

    `batch_size` None: eval_batch_size_for the model's device; `bf16`: see autocast_for; `progress`:
    a progress bar over the batches.
    """
    model.eval()
    device = model_device(model)
    batch_size = batch_size or eval_batch_size_for(device)
    # Longest first: similar lengths share a batch, and the largest batch shows memory problems early.
    order = np.argsort(-features.lengths, kind="stable")
    start_logits: list[np.ndarray | None] = [None] * len(features)
    end_logits: list[np.ndarray | None] = [None] * len(features)
    total_loss, seen = 0.0, 0
    for first in tqdm(range(0, len(order), batch_size), desc="predict", unit="batch", disable=not progress):
        rows = order[first : first + batch_size]
        batch = collate(features, rows, pad_token_id, device)
        labels = (batch.pop("start_positions"), batch.pop("end_positions"))
        with autocast_for(device, bf16):
            output = model(**batch)
        start_batch, end_batch = output.start_logits.float(), output.end_logits.float()
        total_loss += float(span_loss(start_batch, end_batch, batch["attention_mask"], *labels)) * len(rows)
        seen += len(rows)
        starts = start_batch.cpu().numpy()
        ends = end_batch.cpu().numpy()
        for i, row in enumerate(rows):
            length = int(features.lengths[row])
            start_logits[row] = starts[i, :length]
            end_logits[row] = ends[i, :length]
    # Every row was filled: `order` is a permutation of the rows.
    return cast(list[np.ndarray], start_logits), cast(list[np.ndarray], end_logits), total_loss / max(seen, 1)
