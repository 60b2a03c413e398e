"""Where a run's scored questions are now: the files run.json recorded first, then the places a user
names (--data-dir, PEFTQA_DATA_DIR), so a run copied to another folder or machine is scored again
from wherever it is run.

run.json keeps each question file's absolute path (`data_files`); its config keeps what was typed
(a data directory or file that may be relative to the folder the run was started in). A recorded
file that still exists is the data the run was scored on, so it comes first; only when it is gone do
--data-dir, the run's own data directory (if it still holds the file) and PEFTQA_DATA_DIR take over.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peftqa.data import find_split_file
from peftqa.settings.run_config import RunConfig


def scored_split(config: Mapping[str, Any]) -> str:
    """The question file a run is scored from: dev, or train for held-out training articles."""
    return "train" if config.get("eval_split") == "validation" else "dev"


def located_files(config: Mapping[str, Any], settings: Mapping[str, Any], data_dir: str | None = None) -> dict:
    """The config fields (data_dir, or train_file / dev_file) that point the run's scored split where
    its questions are now.

    Args:
        config: run.json's config.
        settings: run.json (its `data_files` record each file's absolute path); an export's settings
            carry the same record.
        data_dir: --data-dir: where to look when the recorded file is gone (before the run's own data
            directory, then PEFTQA_DATA_DIR or the user cache).
    """
    split = scored_split(config)
    field = f"{split}_file"
    source = ((settings.get("data_files") or {}).get(split) or {}).get("source")
    recorded = Path(source) if isinstance(source, str) and Path(source).is_file() else None
    if recorded is not None and config.get(field):
        return {field: str(recorded)}
    if recorded is not None and find_split_file(recorded.parent, split) == recorded:
        return {"data_dir": str(recorded.parent)}
    if config.get(field):
        return {}  # a file or dataset name of the user's: read as it was given
    own = config.get("data_dir")
    if own and find_split_file(Path(own).expanduser(), split) is None:
        own = None  # gone, or relative to another folder: PEFTQA_DATA_DIR (or the user cache) instead
    return {"data_dir": data_dir or own}


def locate_questions(config: RunConfig, settings: Mapping[str, Any], data_dir: str | None = None) -> RunConfig:
    """`config` with its scored split's question file (or data directory) pointing where it is now."""
    return config.replace(**located_files(config.to_dict(), settings, data_dir))
