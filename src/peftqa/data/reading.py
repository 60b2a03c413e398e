"""Reading a question file: the one place that picks a file's reader, a cache of what was read, and
the seeded sample of its questions.

A reader takes a path and returns the file's `Example`s in file order (`squad.read_squad`); another
format is one more reader module and one more line in `reader_for`.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from pathlib import Path

from peftqa.data.example import Example
from peftqa.data.squad import read_squad
from peftqa.errors import PeftqaError

Reader = Callable[[Path], list[Example]]


def reader_for(path: Path) -> Reader:
    """The reader of `path`'s format: every question file is SQuAD v1.1 (`.json` or `.json.gz`)."""
    return read_squad


def load_squad(path: str | os.PathLike, limit: int | None = None, shuffle_seed: int | None = None) -> list[Example]:
    """Read a question file into Examples, checking every field.

    Args:
        path: a `.json` or `.json.gz` file in the official SQuAD v1.1 format.
        limit: keep this many questions (all when None).
        shuffle_seed: when given, the kept questions are a seeded random sample (not the first
            articles, which cover few topics); when None, the first `limit` in file order.
    """
    examples = list(_read_examples(Path(path).resolve(), _stamp(Path(path))))
    if limit is not None and limit < len(examples):
        if shuffle_seed is not None:
            examples = sample_questions(examples, limit, shuffle_seed)
        else:
            examples = examples[:limit]
    return examples


def sample_questions(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded uniform sample of `n` questions, kept in file order (all of them when n >= len).

    The first n questions of a SQuAD file come from a few articles only; a uniform sample spreads
    over all of them. The same seed gives the same questions, so every method is scored on one set.
    """
    if n < 0:
        raise PeftqaError(f"cannot sample {n} questions: the number must not be negative")
    if n >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]


def _stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: a file changed on disk is read again, not served from the cache."""
    try:
        info = path.stat()
    except OSError as error:
        raise PeftqaError(f"{path}: cannot read ({error})") from error
    return info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _read_examples(path: Path, stamp: tuple[int, int]) -> tuple[Example, ...]:
    """The file's questions, parsed once per process: a run with a validation split reads train twice
    (its training questions and its held-out ones), and a study reads the same two files for every run."""
    return tuple(reader_for(path)(path))
