"""Training and scoring batches: which rows go together, and how they become padded tensors.

Batches hold features of similar length padded only to their longest row (dynamic padding): SQuAD
windows average about 170 real tokens of 384, so fixed padding would waste half the work. `collate`
builds a batch in NumPy; `DeviceFeatures` gathers the same batch on the model's device from
features uploaded once.

All features of a run go to the device in one copy (int32 tokens, int8 segments, row starts and
lengths, int64 labels: about 70 MB for full SQuAD train at 384 tokens). A batch is then an index
matrix `starts[rows, None] + arange(width)`, masked by the row lengths, gathered on the device: the
host only picks the rows and reads the width from its NumPy lengths, so building a batch never waits
for the device and costs a dozen small kernels instead of a NumPy loop on the main thread. On a CPU
the same code runs on CPU tensors and gives exactly `collate`'s batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from peftqa.features.windows import FeatureSet


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows: random order, little padding.

    Rows are shuffled, cut into mega-batches of 50 batches, sorted by length inside each, split
    into batches, and the batches shuffled again. The same seed gives the same batches.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches: list[np.ndarray] = []
    for first in range(0, len(order), mega):
        chunk = order[first : first + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(features: FeatureSet, rows, pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A padded batch of the given feature rows, with labels, on `device`."""
    lengths = [int(features.row_starts[r + 1] - features.row_starts[r]) for r in rows]
    width = max(lengths)
    input_ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64) if features.token_type_ids is not None else None
    for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        span = features.row(row)
        input_ids[i, :length] = features.input_ids[span]
        attention_mask[i, :length] = 1
        if token_type_ids is not None and features.token_type_ids is not None:
            token_type_ids[i, :length] = features.token_type_ids[span]
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "start_positions": features.start_positions[list(rows)].astype(np.int64),
        "end_positions": features.end_positions[list(rows)].astype(np.int64),
    }
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return {name: torch.from_numpy(array).to(device, non_blocking=True) for name, array in batch.items()}


def pad_to_width(batch: dict[str, torch.Tensor], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The batch padded on the right to `width` tokens (ids with pad_id, masks and segments with 0).

    Every rank of a data-parallel run pads its shard as wide as the global batch: pad logits take part
    in the loss's softmax, so a narrower shard would not compute the loss one process computes.
    """
    extra = width - batch["input_ids"].shape[1]
    if extra <= 0:
        return batch
    padded = {}
    for name, tensor in batch.items():
        fill = pad_id if name == "input_ids" else 0
        padded[name] = torch.nn.functional.pad(tensor, (0, extra), value=fill) if tensor.ndim == 2 else tensor
    return padded


class DeviceFeatures:
    """A FeatureSet on `device`, from which padded batches are gathered by row index."""

    def __init__(self, features: FeatureSet, pad_token_id: int, device: torch.device) -> None:
        self.device = device
        self.host_lengths = features.lengths
        # One pad token (segment 0) after the last row: every position past a row's end gathers it,
        # so padding needs no second pass over the batch.
        self.pad_index = len(features.input_ids)
        pad = np.array([pad_token_id], dtype=np.int32)
        ids = np.concatenate([features.input_ids.astype(np.int32, copy=False), pad])
        self.input_ids = torch.from_numpy(ids).to(device)
        self.token_type_ids = None
        if features.token_type_ids is not None:
            types = np.concatenate([features.token_type_ids.astype(np.int8, copy=False), np.zeros(1, dtype=np.int8)])
            self.token_type_ids = torch.from_numpy(types).to(device)
        self.row_starts = torch.from_numpy(features.row_starts[:-1].astype(np.int64)).to(device)
        self.lengths = torch.from_numpy(features.lengths.astype(np.int64)).to(device)
        self.start_positions = torch.from_numpy(features.start_positions.astype(np.int64)).to(device)
        self.end_positions = torch.from_numpy(features.end_positions.astype(np.int64)).to(device)

    def upload_rows(self, batches: list[np.ndarray]) -> list[torch.Tensor]:
        """Every batch's row indices in one host-to-device copy, returned as views (one per batch).

        One copy per epoch: a copy from pageable host memory waits for the device's queue, so one per
        step would be a host synchronisation per step.
        """
        if not batches:
            return []
        flat = torch.from_numpy(np.concatenate(batches).astype(np.int64)).to(self.device)
        return list(torch.split(flat, [len(rows) for rows in batches]))

    def batch(self, rows: torch.Tensor, width: int) -> dict[str, torch.Tensor]:
        """The rows (a device tensor of row indices) padded to `width` tokens, with labels.

        `width` comes from the host (the longest of the rows, or of the global batch when several
        processes share it); the keys, values and dtypes are those of `collate`.
        """
        positions = torch.arange(width, device=self.device)
        inside = positions < self.lengths.index_select(0, rows)[:, None]
        index = torch.where(inside, self.row_starts.index_select(0, rows)[:, None] + positions, self.pad_index)
        flat = index.view(-1)
        # index_select, not tensor[index]: on a CPU advanced indexing of a few thousand elements goes to
        # the thread pool, far slower than index_select on a busy machine; on CUDA both are one gather
        # kernel.
        batch = {
            "input_ids": self.input_ids.index_select(0, flat).view(index.shape).long(),
            "attention_mask": inside.long(),
            "start_positions": self.start_positions.index_select(0, rows),
            "end_positions": self.end_positions.index_select(0, rows),
        }
        if self.token_type_ids is not None:
            batch["token_type_ids"] = self.token_type_ids.index_select(0, flat).view(index.shape).long()
        return batch


def uses_sdpa(model: Any) -> bool:
    """Whether the model's attention is PyTorch's scaled_dot_product_attention (transformers' default)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) == "sdpa"


def forward_inputs(batch: dict[str, torch.Tensor], padded: bool, sdpa: bool) -> dict[str, torch.Tensor]:
    """A training batch as the model's forward takes it, without a device-to-host read inside it.

    transformers reads `attention_mask.all()` on the host in every forward (to drop the mask of a batch
    without padding, which lets SDPA use its fastest kernel): a synchronisation per step that stops the
    host from queueing the next step while the device works. The host already knows from the lengths
    whether a batch has padding, so: no padding -> no mask (what transformers would pass on); padding
    with SDPA -> the 4-D boolean mask SDPA takes (True: attend), which transformers passes through
    unread. Other attention implementations get the 2-D mask and keep their read.
    """
    inputs = dict(batch)
    mask = inputs.pop("attention_mask")
    if padded:
        inputs["attention_mask"] = mask.bool()[:, None, None, :] if sdpa else mask
    return inputs
