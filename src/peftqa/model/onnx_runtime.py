"""ONNX Runtime behind the interface of a transformers QA model, so an exported model.onnx answers
through the same code (predict, evaluate, the web page) as a PyTorch model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from peftqa.errors import PeftqaError

if TYPE_CHECKING:
    import torch

_ONNX_EXTRA = "pip install 'peftqa[onnx]'"


def require_onnx() -> None:
    """onnx and onnxruntime are an optional extra: say which one to install when they are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise PeftqaError(f"ONNX needs onnx and onnxruntime ({error.name} is not installed): {_ONNX_EXTRA}") from None


class OnnxQAModel:
    """An ONNX Runtime session that answers like a transformers QA model: `model(**batch)` returns
    start_logits and end_logits as CPU tensors, so predict_logits, evaluate and the web page use it
    unchanged. `parameters()` yields one empty CPU tensor: that is how they find the device."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime
        import torch

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise PeftqaError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from error
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.path = Path(path)
        self._anchor = torch.zeros(0)

    def parameters(self) -> Iterator[torch.Tensor]:
        yield self._anchor

    def eval(self) -> OnnxQAModel:
        return self

    def to(self, device: Any) -> OnnxQAModel:
        return self  # the CPU execution provider only

    def __call__(self, **batch: Any) -> SimpleNamespace:
        return self.forward(**batch)

    def forward(self, **batch: Any) -> SimpleNamespace:
        import torch

        feed = {name: batch[name].cpu().numpy() for name in self.input_names}
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return SimpleNamespace(start_logits=torch.from_numpy(start), end_logits=torch.from_numpy(end))
