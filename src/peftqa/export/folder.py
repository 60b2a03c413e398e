"""The export's output folder: never over a run or an arbitrary folder, written beside it in a
staging folder and renamed into place only once everything in it is checked."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peftqa.errors import PeftqaError
from peftqa.inference.run_folder import EXPORT_JSON


def check_out(out: Path, run_dir: Path, force: bool) -> None:
    """Refuse an --out that exists (without --force), that is not an export, or that holds the run."""
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents or run in resolved.parents:
        raise PeftqaError(f"--out {out} overlaps the run directory {run_dir}; choose another folder")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise PeftqaError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not force:
        raise PeftqaError(f"--out {out} exists; pass --force to replace it")
    if not (out / EXPORT_JSON).is_file():
        # --force replaces an earlier export, never an arbitrary folder such as '.' or a home directory.
        raise PeftqaError(f"--out {out} is not a peftqa export (no {EXPORT_JSON}); --force only replaces exports")


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A fresh folder beside --out to write into, removed again if anything inside the block fails;
    `publish` renames it to --out once everything is checked."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise PeftqaError(f"cannot write to --out {out}: {error.strerror or error}") from error
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(staging: Path, out: Path) -> None:
    """Put the finished export in place; an export it replaces is removed only after the rename."""
    # mkdtemp and safetensors create owner-only files: give the export the modes of anything else written here.
    umask = os.umask(0)
    os.umask(umask)
    for path in [staging, *staging.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    """The size of every file under `folder`, in bytes."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
