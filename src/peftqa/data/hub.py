"""Questions from the `datasets` package: a folder written by `Dataset.save_to_disk` or a dataset name
on the Hugging Face Hub (`squad_v2`), in the SQuAD layout (id, title, context, question, answers).

`datasets` is optional (`pip install 'peftqa[datasets]'`): without it, a source that is neither a file
nor a folder of question files is one clear error. A source may name its split as `SOURCE:SPLIT`;
otherwise a training source reads `train` and a dev source `validation`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from peftqa.data.example import Example
from peftqa.data.jsonl import parse_rows
from peftqa.errors import PeftqaError

DEFAULT_SPLITS = {"train": "train", "dev": "validation"}


def datasets_installed() -> bool:
    return importlib.util.find_spec("datasets") is not None


def read_dataset(source: str, role: str, answers_required: bool = True) -> list[Example]:
    """Every question of a `datasets` folder or Hub dataset, in its order.

    Args:
        source: a folder saved with `save_to_disk`, or a Hub name; `:SPLIT` may follow either.
        role: "train" or "dev": which split to read when `source` names none (DEFAULT_SPLITS).
        answers_required: False for questions to be answered (rows may then lack `answers`).
    """
    if not datasets_installed():
        raise PeftqaError(
            f"{source}: no such file, and the `datasets` package is not installed to read it as a dataset "
            "(pip install 'peftqa[datasets]')"
        )
    import datasets  # optional: imported only for a source that needs it

    name, split = split_source(source, role)
    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, split=split)
    except Exception as error:  # datasets raises many kinds (FileNotFoundError, ConnectionError, ValueError...)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PeftqaError(f"{source}: cannot load it as a dataset ({first})") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise PeftqaError(f"{source}: no split '{split}' (it has {', '.join(loaded)}); name one as {name}:SPLIT")
        loaded = loaded[split]
    rows = ((f"{source} row {number}", row) for number, row in enumerate(loaded, 1))
    return parse_rows(rows, source, answers_required)


def split_source(source: str, role: str) -> tuple[str, str]:
    """'squad_v2:validation' -> ('squad_v2', 'validation'); without a split, the role's default."""
    if ":" in source and not Path(source).exists():
        name, _, split = source.rpartition(":")
        if name and split:
            return name, split
    return source, DEFAULT_SPLITS[role]
