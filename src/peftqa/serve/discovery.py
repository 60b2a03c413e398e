"""Which runs the page serves when none is named, and how it names folders without showing the server's
own paths."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder

# `peftqa serve` with no run directory shows the newest run of each of these methods.
DEFAULT_METHODS = ("lora", "ia3")
# Where runs are looked for: runs/ (peftqa train), backend/ (the original train.py layout),
# studies/quick/runs/ (make demo).
DEFAULT_SEARCH_DIRS = ("runs", "backend", "studies/quick/runs")


def newest_runs(
    search_dirs: Iterable[str | Path] = DEFAULT_SEARCH_DIRS, methods: Sequence[str] = DEFAULT_METHODS
) -> list[Path]:
    """The newest finished run (by metrics.json time) of each method under the search folders.

    A folder with a run.json but no metrics.json is a run that did not finish, and is passed
    over; an unreadable run.json is too (it is reported when named explicitly).
    """
    newest: dict[str, tuple[float, Path]] = {}
    for root in map(Path, search_dirs):
        if not root.is_dir():
            continue
        for run_json in root.glob(f"*/{run_folder.RUN_JSON}"):
            metrics = run_json.parent / run_folder.METRICS_JSON
            try:
                method = files.read_json(run_json)["config"]["method"]
                finished = metrics.stat().st_mtime
            except (PeftqaError, KeyError, TypeError, OSError):
                continue
            if method in methods and finished > newest.get(method, (float("-inf"), None))[0]:
                newest[method] = (finished, run_json.parent)
    return [newest[m][1] for m in methods if m in newest]


def public_path(folder: Path) -> str:
    """A folder as the page may show it: relative to where the server started when it is below it,
    else only its name (never an absolute path of the server's machine)."""
    try:
        return Path(folder).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(folder).name


def public_model_name(model: str | None) -> str | None:
    """A Hub id or alias as it is; a local folder by its name only."""
    if model and (Path(model).is_absolute() or os.sep in model) and Path(model).exists():
        return Path(model).name
    return model
