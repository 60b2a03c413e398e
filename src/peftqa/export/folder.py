"""The export's output folder: never over a run or an arbitrary folder, written beside it in a
staging folder and renamed into place only once everything in it is checked.

An interrupted export leaves nothing behind: Ctrl-C and SIGTERM remove the staging folder on the way
out, and what a kill -9 or a power cut leaves (a hidden `.OUT.partial-PID-*` folder whose process is
gone) is removed by the next export to the same --out.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference.run_folder import EXPORT_JSON


def check_out(out: Path, run_dir: Path, force: bool) -> None:
    """Refuse an --out that exists (without --force), that is not an export, or that holds the run."""
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents or run in resolved.parents:
        raise PeftqaError(f"--out {out} overlaps the run directory {run_dir}; choose another folder")
    state = files.destination_state(out, "--out", lambda folder: (folder / EXPORT_JSON).is_file())
    if state == "new":
        return
    if not force:
        raise PeftqaError(f"--out {out} exists; pass --force to replace it")
    if state == "theirs":
        # --force replaces an earlier export, never an arbitrary folder such as '.' or a home directory.
        raise PeftqaError(f"--out {out} is not a peftqa export (no {EXPORT_JSON}); --force only replaces exports")


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A fresh folder beside --out to write into, removed again if anything inside the block fails or
    the process is interrupted or terminated; `publish` renames it to --out once everything is checked."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    except OSError as error:
        raise PeftqaError(f"cannot write to --out {out}: {error.strerror or error}") from error
    try:
        with _terminate_as_exit():
            yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove what earlier exports to `out` left behind when killed (their process is gone): staging
    folders, and the earlier export a killed `publish` had moved aside (put back when `out` is missing)."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(partial|old)-(\d+)(-.*)?")
    removed = []
    for sibling in out.parent.glob(f".{out.name}.*"):
        found = pattern.fullmatch(sibling.name)
        if found is None or not sibling.is_dir() or _alive(int(found.group(2))):
            continue
        if found.group(1) == "old" and not out.exists():
            os.replace(sibling, out)
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number past any process id
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (`kill`, a closed terminal's job control, a container stopping) ends the process through
    Python, so the staging folder is removed as on Ctrl-C; only the main thread may set a handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def publish(staging: Path, out: Path) -> None:
    """Put the finished export in place; an export it replaces is removed only after the rename."""
    files.give_usual_modes(staging)  # mkdtemp and safetensors create owner-only files
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
