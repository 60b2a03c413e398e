"""The folder a run is written to (--output-dir), checked before any data or model loads.

A run writes only into a folder that is new (missing or empty) or already holds a peftqa run; a
folder with anything else in it (the user's own files) is refused unless --force, as `peftqa export`
and `peftqa report` refuse theirs. A run is never put inside another run's folder, and --resume
continues a run that is there, never silently starts a fresh one.
"""

from __future__ import annotations

from pathlib import Path

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.training.checkpoint import CHECKPOINT_DIR


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a peftqa run, finished or not (run.json, or a checkpoint to resume)."""
    return (folder / run_folder.RUN_JSON).is_file() or (folder / CHECKPOINT_DIR).is_dir()


def check_output_dir(run_dir: Path, resume: bool = False, force: bool = False) -> None:
    """Refuse an --output-dir that is a file, cannot be written, sits inside another run, holds a
    finished run (without resume), a run's checkpoint (without resume) or the user's own files (without
    force)."""
    enclosing = next((parent for parent in Path(run_dir).resolve().parents if holds_run(parent)), None)
    if enclosing is not None:
        raise PeftqaError(f"--output-dir {run_dir} is inside the run folder {enclosing}; choose a folder outside it")
    state = files.destination_state(run_dir, "--output-dir", holds_run)
    if state == "theirs" and not force:
        raise PeftqaError(
            f"--output-dir {run_dir} holds files that are not a peftqa run (no {run_folder.RUN_JSON}); choose another "
            "folder, or pass --force to write the run among them"
        )
    if state == "ours" and not resume:
        if (run_dir / run_folder.METRICS_JSON).is_file() or (run_dir / CHECKPOINT_DIR).is_dir():
            raise PeftqaError(f"{run_dir} already holds a run; pass --resume or choose another --output-dir")


def check_resumable(run_dir: str | None) -> Path:
    """The run folder --resume continues: it must be named and hold a run (run.json or a checkpoint)."""
    if not run_dir:
        raise PeftqaError("--resume continues the run in --output-dir: name that folder")
    folder = Path(run_dir)
    if not folder.is_dir():
        raise PeftqaError(f"--resume: {folder} does not exist, so there is no run to continue (drop --resume)")
    if not holds_run(folder):
        raise PeftqaError(
            f"--resume: {folder} holds no peftqa run ({run_folder.RUN_JSON} or {CHECKPOINT_DIR}/) to continue"
        )
    return folder
