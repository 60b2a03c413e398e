"""The adapters peftqa writes itself (BitFit, bottleneck adapters, prefix tuning): named tensors in one
safetensors file, read back only into a model that has exactly those tensors, of those shapes, so an
adapter of another method or model is refused in one line instead of half-loaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def save_tensors(tensors: Mapping[str, Any], path: Path) -> None:
    """`tensors` (detached CPU copies) as the safetensors file `path`, its folder made."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}, str(path))


def load_tensors(path: Path, expected: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The tensors of `path`, which must be exactly `expected`'s names with its shapes (else ValueError)."""
    from safetensors.torch import load_file

    state = load_file(path)
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))[:3]
        raise ValueError(f"{path.name} does not match this model (missing {missing}, {len(state)} tensors)")
    wrong = next((name for name, tensor in state.items() if tuple(tensor.shape) != tuple(expected[name])), None)
    if wrong is not None:
        shapes = f"{tuple(state[wrong].shape)} saved, {tuple(expected[wrong])} here"
        raise ValueError(f"{path.name} does not match this model ({wrong}: {shapes})")
    return state
