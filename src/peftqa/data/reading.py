"""Reading questions: the one place that picks a source's reader, a cache of what was read, and the
seeded sample of its questions.

A source is a file (SQuAD JSON v1.1 or v2.0, or JSON Lines in the `datasets` layout, plain or
gzipped: told apart by their content, not their name) or, with `datasets` installed, a saved
dataset folder or a Hub name. A reader takes a path and returns the file's `Example`s in file order;
another format is one more reader module and one more line in `reader_for`.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
import re
import zlib
from collections.abc import Callable
from pathlib import Path

from peftqa.data.example import Example
from peftqa.data.hub import read_dataset
from peftqa.data.jsonl import read_jsonl
from peftqa.data.squad import read_squad
from peftqa.errors import PeftqaError
from peftqa.files import loads_json

Reader = Callable[[Path, bool], list[Example]]
FORMATS = ("squad", "jsonl")
# A JSON Lines file is told by its first line, read whole up to this size.
_PEEK_BYTES = 8 << 20
# A longer first line is told by its first key: a question row's, or a document's ('data', 'version').
_FIRST_KEY = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"(\w+)"\s*:')
_ROW_KEYS = frozenset({b"id", b"title", b"context", b"question", b"answers"})


def detect_format(path: Path) -> str:
    """ "jsonl" when the first non-blank line is a whole JSON object without a 'data' list, else "squad"
    (an official file is one line holding {"data": ...}; a pretty-printed one starts with a lone '{').
    A first line longer than _PEEK_BYTES is a question row when its first key is a row's field."""
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
            line = b""
            while not line.strip():
                line = handle.readline(_PEEK_BYTES)
                if not line:
                    break
    except (OSError, EOFError, zlib.error) as error:
        raise PeftqaError(f"{path}: cannot read ({error})") from error
    if len(line) >= _PEEK_BYTES and not line.endswith(b"\n"):
        key = _FIRST_KEY.match(line)
        return "jsonl" if key is not None and key.group(1) in _ROW_KEYS else "squad"
    try:
        first = loads_json(line, path, text_checked=False)
    except PeftqaError:  # not one JSON value: the SQuAD reader names what is wrong with the document
        return "squad"
    return "squad" if isinstance(first, dict) and "data" in first else "jsonl"


def reader_for(path: Path) -> Reader:
    """The reader of `path`'s format (`detect_format`)."""
    return {"squad": read_squad, "jsonl": read_jsonl}[detect_format(path)]


def load_squad(
    source: str | os.PathLike,
    limit: int | None = None,
    shuffle_seed: int | None = None,
    answers_required: bool = True,
    role: str = "dev",
) -> list[Example]:
    """Read a question source into Examples, checking every field.

    Args:
        source: a question file (SQuAD JSON or JSON Lines, plain or gzipped), or a `datasets` folder or
            name (`NAME[:SPLIT]`, read with the `datasets` package).
        limit: keep this many questions (all when None).
        shuffle_seed: when given, the kept questions are a seeded random sample (not the first
            articles, which cover few topics); when None, the first `limit` in file order.
        answers_required: False for questions to be answered (their answers may be missing).
        role: "train" or "dev": the split a `datasets` source reads when it names none.
    """
    path = Path(source)
    if path.is_file():
        examples = list(_read_examples(path.resolve(), _stamp(path), answers_required))
    else:
        examples = list(_read_dataset(str(source), role, answers_required))
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
def _read_examples(path: Path, stamp: tuple[int, int], answers_required: bool) -> tuple[Example, ...]:
    """The file's questions, parsed once per process: a run with a validation split reads train twice
    (its training questions and its held-out ones), and a study reads the same two files for every run."""
    return tuple(reader_for(path)(path, answers_required))


@functools.lru_cache(maxsize=2)
def _read_dataset(source: str, role: str, answers_required: bool) -> tuple[Example, ...]:
    return tuple(read_dataset(source, role, answers_required))
