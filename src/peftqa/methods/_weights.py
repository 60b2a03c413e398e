"""The adapters peftqa writes itself (BitFit, bottleneck adapters, prefix tuning): named tensors in one
safetensors file, read back only into a model that has exactly those tensors, of those shapes, so an
adapter of another method or model is refused in one line instead of half-loaded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def base_subset_method(is_trained: Callable[[str], bool], weights_file: str) -> dict[str, Any]:
    """The MethodSpec fields `apply`, `save`, `load` and `artifact` of a method that trains some of the
    base model's own tensors, those `is_trained` names (BitFit, the head probe): saved as one safetensors
    file in the adapter folder and put back in place into a fresh base model, every one of them there."""
    from peftqa.methods._peft import ADAPTER_DIR

    def apply(model: Any, options: Any) -> Any:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(is_trained(name))
        return model

    def save(model: Any, run_dir: Path) -> None:
        save_tensors({n: p for n, p in model.named_parameters() if is_trained(n)}, run_dir / ADAPTER_DIR / weights_file)

    def load(base_model: Any, run_dir: Path) -> Any:
        expected = {name: p.shape for name, p in base_model.named_parameters() if is_trained(name)}
        base_model.load_state_dict(load_tensors(run_dir / ADAPTER_DIR / weights_file, expected), strict=False)
        return base_model.eval()

    return {"apply": apply, "save": save, "load": load, "artifact": ADAPTER_DIR}
