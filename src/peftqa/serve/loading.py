"""Loading the runs behind the page, each once, in the mode asked for.

How a run is held (`peftqa serve` flags):

- default, `merged`: each run gets its own copy of the base weights with its adapter merged into them
  (a plain fp32 transformers model, no adapter layers at answer time). Same answers as `evaluate`, and
  the fastest exact mode; it costs one copy of the base weights per run. Methods that cannot merge
  (bottleneck adapters) answer with their adapter modules, on their own copy. When the runs would take more
  than half of the memory available, the page falls back to `shared`.
- `shared` (`--shared-base`): runs on one backbone share one base model; each keeps its unmerged
  adapter in a module tree of its own (peft swaps layers in place, so two adapters cannot live in one
  tree) whose frozen tensors are the base's very objects. For many runs. Only methods loaded as peft
  adapters share; `full` and `bitfit` write into their base, so they get one of their own.
- `fast` (`--fast`): merged, and answers under bf16 autocast: faster on CPUs with bf16 units (AMX,
  AVX-512 BF16; refused on others, where bf16 is emulated and several times slower), and a few answers
  differ from `evaluate`.
- ONNX (`--backend onnx`): folders written by `peftqa export --format onnx`, run by ONNX Runtime; a
  run directory is exported once (fp32, checked as `peftqa export` checks it) into peftqa's cache.

Folders written by `peftqa export --format hf` serve like runs (they are merged already).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from peftqa import export, files, hardware
from peftqa.errors import PeftqaError
from peftqa.export.verify import merge_model
from peftqa.inference import run_folder
from peftqa.methods import get_method
from peftqa.model import onnx_runtime
from peftqa.serve.served import ServedModel

MODES = ("merged", "shared", "fast")
BACKENDS = ("torch", "onnx")
# Merged copies are used while the runs' fp32 weights take at most this share of the available memory.
MEMORY_SHARE = 0.5


def share_weights(base_model):
    """A new module tree whose parameters and buffers are `base_model`'s own tensors (no copy)."""
    memo = {id(tensor): tensor for tensor in base_model.parameters()}
    memo.update({id(tensor): tensor for tensor in base_model.buffers()})
    return copy.deepcopy(base_model, memo)


class _BaseCache:
    """Base QA models by source path, each loaded once."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def skeleton_for(self, settings: dict[str, Any]):
        from peftqa.model.backbone import load_qa_model

        source = run_folder.base_source(settings)
        if not get_method(settings["config"]["method"]).shares_base:
            return load_qa_model(source)
        if source not in self._models:
            self._models[source] = load_qa_model(source).eval()
        return share_weights(self._models[source])


def merged(loaded: run_folder.LoadedRun) -> run_folder.LoadedRun:
    """The run with its peft adapter folded into its own base weights (a plain transformers model)."""
    return dataclasses.replace(loaded, model=merge_model(loaded.model))


# Requests the server handles at once (waitress threads): `peftqa serve --threads`'s default.
SERVER_THREADS = 4


def threads_per_model(models: int, cores: int | None = None) -> int:
    """The torch (or ONNX Runtime) threads each model gets: the models of a request answer side by
    side, so each gets its share of the cores this process may use (a container's CPU set)."""
    return max(1, (cores or hardware.cpu_cores()) // max(1, models))


def merged_copies_fit(folders: Sequence[Path], available: int | None = None) -> bool:
    """Whether one fp32 copy of the weights per run (from metrics.json's total_params) takes at most
    MEMORY_SHARE of the available memory; True when either figure is unknown."""
    available = hardware.available_memory_bytes() if available is None else available
    needed = 0
    for folder in folders:
        try:
            needed += 4 * int(files.read_json(folder / run_folder.METRICS_JSON)["total_params"])
        except (PeftqaError, KeyError, TypeError, ValueError):
            continue
    return available is None or needed <= MEMORY_SHARE * available


def run_digest(run_dir: Path) -> str:
    """A short hash of every file's path, size and modification time in a run directory: a run trained
    again (or changed in any way) gets another digest, without reading its weights."""
    digest = hashlib.sha256()
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(run_dir).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def onnx_export_of(run_dir: Path, report: Callable[[str], None] = print) -> Path:
    """The fp32 ONNX export of a run, made on first use into peftqa's cache (onnx/<run>-<digest>) and
    reused while the run is unchanged; its logits are checked against PyTorch's as `peftqa export` does."""
    folder = files.cache_dir("onnx") / f"{run_dir.name}-{run_digest(run_dir)}"
    if not run_folder.is_export(folder):
        report(f"exporting {run_dir.name} to ONNX once (about 10-20 s on 2 cores; kept in {folder})")
        folder.parent.mkdir(parents=True, exist_ok=True)
        export.export_run(run_dir, folder, fmt="onnx", force=True, log=lambda line: None)
    return folder


def load_models(
    run_dirs: Sequence[str | Path],
    report: Callable[[str], None] = print,
    mode: str = "merged",
    backend: str = "torch",
    onnx_threads: int | None = None,
) -> list[ServedModel]:
    """Load every run that loads and answers a warm-up question; a broken one is reported by name and skipped.

    Args:
        run_dirs: run directories written by `peftqa train`, or folders written by `peftqa export`
            (hf folders for the torch backend, onnx folders for the onnx backend).
        report: gets one line per skipped run, and one when merged copies would not fit in memory.
        mode: merged (default), shared or fast (see the module's docstring); torch backend only.
        backend: torch, or onnx (ONNX Runtime on exported ONNX folders; a run directory is exported
            once into the cache, see onnx_export_of).
        onnx_threads: ONNX Runtime threads per model (None: its default).
    """
    if backend not in BACKENDS:
        raise PeftqaError(f"unknown backend '{backend}'; known backends: {', '.join(BACKENDS)}")
    if mode not in MODES:
        raise PeftqaError(f"unknown mode '{mode}'; known modes: {', '.join(MODES)}")
    if backend == "onnx":
        onnx_runtime.require_onnx()
    folders = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))  # a run named twice loads once
    if backend == "torch" and mode == "merged" and not merged_copies_fit(folders):
        report("merged copies of these runs would not fit in memory: their base weights are shared instead")
        mode = "shared"
    bases = _BaseCache()
    served = []
    for folder, name in zip(folders, run_folder.display_names(folders), strict=True):
        try:
            if backend == "onnx" and not run_folder.is_export(folder):
                model = _load_one(onnx_export_of(folder, report), name, mode, backend, bases, onnx_threads)
                # The page names the run it answers for, not the cache folder of its export.
                model.run = dataclasses.replace(model.run, run_dir=folder)
            else:
                model = _load_one(folder, name, mode, backend, bases, onnx_threads)
            model.warm_up()  # a run that cannot answer is found now, not by the first user
            served.append(model)
        except (PeftqaError, OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
            # A broken run must not stop the others: name it, say why, go on.
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            report(f"skipped {folder.name}: {first_line}")
    return served


def _load_one(
    folder: Path, name: str, mode: str, backend: str, bases: _BaseCache, onnx_threads: int | None
) -> ServedModel:
    if run_folder.is_export(folder):
        info = run_folder.read_export_info(folder)
        if info["format"] != ("onnx" if backend == "onnx" else "hf"):
            wanted = "--backend onnx" if info["format"] == "onnx" else "the torch backend (the default)"
            raise PeftqaError(f"an {info['format']} export: serve it with {wanted}")
        loaded = run_folder.load_run(folder, threads=onnx_threads)
        if backend == "onnx":
            return ServedModel(name, loaded, backend=f"onnxruntime {info.get('quantize') or 'fp32'}")
        return ServedModel(name, loaded, bf16=mode == "fast", backend=_torch_backend(mode))
    if mode == "shared":
        _, settings = run_folder.check_run_dir(folder)
        loaded = run_folder.load_run(folder, base_model=bases.skeleton_for(settings))
        return ServedModel(name, loaded, backend=_torch_backend(mode))
    loaded = run_folder.load_run(folder)
    if not get_method(loaded.method).merges:
        # Bottleneck adapters cannot merge: the run answers with its modules, on its own base weights.
        backend = _torch_backend(mode).replace("merged", "unmerged adapters")
        return ServedModel(name, loaded, bf16=mode == "fast", backend=backend)
    return ServedModel(name, merged(loaded), bf16=mode == "fast", backend=_torch_backend(mode))


def _torch_backend(mode: str) -> str:
    return {"merged": "torch fp32, merged", "shared": "torch fp32, shared base", "fast": "torch bf16, merged"}[mode]
