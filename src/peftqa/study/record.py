"""A study folder's record, study.json: what `peftqa study` finished there, found again from anywhere.

A folder is one study however many calls it took: a call that names other methods (`--methods a,b`,
then `--methods c`) adds them, so study.json, the study's report and the notebook cover every method
of the preset that finished there; the runs a call trains again replace their earlier entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.inference.run_files import Check, check_fields, is_number, is_text, list_of, mapping_of

STUDY_JSON = "study.json"
# What is read back of study.json, each field checked when it is there (runs and sweeps are required
# to find the study's folders).
_NAMES: tuple[Check, str] = (list_of(is_text), "a list of folder names")
_STUDY_FIELDS: dict[str, tuple[Check, str]] = {
    "runs": _NAMES,
    "sweeps": _NAMES,
    "methods": _NAMES,
    "preset": (is_text, "a string"),
    "learning_rates": (mapping_of(is_number), "an object of numbers"),
    "results": (list_of(lambda value: isinstance(value, dict)), "a list of objects"),
}


def read_study(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """study.json, checked (with the fields `required` there)."""
    fields = {name: _STUDY_FIELDS[name] for name in required}
    return check_fields(files.read_json(path), path, fields, _STUDY_FIELDS, "a peftqa study.json")


def study_folders(study_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """A finished study's run directories and sweep directories, in study.json's order.

    study.json names them as the study was run (relative to where `peftqa study` ran); they are looked
    up under `study_dir` instead, so a study folder can be opened from anywhere, or after it was moved.

    Raises:
        PeftqaError: no study.json in `study_dir` (the study has not finished), or a run it names is missing.
    """
    folder = Path(study_dir)
    if not (folder / STUDY_JSON).is_file():
        raise PeftqaError(f"{folder}: no {STUDY_JSON} (has `peftqa study` finished there?)")
    summary = read_study(folder / STUDY_JSON, required=("runs", "sweeps"))
    run_dirs = [folder / "runs" / Path(name).name for name in summary["runs"]]
    sweep_dirs = [folder / "sweeps" / Path(name).name for name in summary["sweeps"]]
    missing = [str(run_dir) for run_dir in run_dirs if not run_dir.is_dir()]
    if missing:
        raise PeftqaError(f"{folder / STUDY_JSON} names runs that are not there: {', '.join(missing)}")
    return run_dirs, sweep_dirs


def earlier_calls(
    folder: Path, preset: str, methods_now: Sequence[str], runs_now: Sequence[Path], sweeps_now: Sequence[Path]
) -> dict[str, Any]:
    """What earlier calls of the same preset finished in `folder` and this call (its methods, runs and
    sweeps) did not run again: their methods, runs and sweeps (paths under `folder`), chosen learning
    rates and results, as study.json holds them. Nothing without a study.json, for another preset, or
    for runs no longer there."""
    earlier: dict[str, Any] = {"methods": [], "runs": [], "sweeps": [], "learning_rates": {}, "results": []}
    path = folder / STUDY_JSON
    before = read_study(path) if path.is_file() else {}
    if before.get("preset") != preset:
        return earlier
    run_names, sweep_names = {Path(p).name for p in runs_now}, {Path(p).name for p in sweeps_now}
    for run, result in zip(before.get("runs", []), before.get("results", []), strict=False):
        run_dir = folder / "runs" / Path(run).name
        if run_dir.name not in run_names and run_dir.is_dir():
            earlier["runs"].append(run_dir)
            earlier["results"].append(result)
    kept = {Path(p).name for p in before.get("sweeps", [])} - sweep_names
    earlier["sweeps"] = [folder / "sweeps" / name for name in sorted(kept) if (folder / "sweeps" / name).is_dir()]
    earlier["learning_rates"] = {k: v for k, v in before.get("learning_rates", {}).items() if k in kept}
    earlier["methods"] = [m for m in before.get("methods", []) if m not in methods_now]
    return earlier
