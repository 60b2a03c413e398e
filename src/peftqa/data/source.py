"""Which data a run used: each question source's format and fingerprint, as run.json records them.

An official SQuAD v1.1 file is known by its MD5 (the feature cache and run.json keep that, as they
always have); any other file is fingerprinted by the SHA-256 of its uncompressed content, and a
`datasets` source by the SHA-256 of the questions read from it. `--resume`, the feature cache and the
report compare these fingerprints, so a file changed under the same name is never taken for the old one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from peftqa.data.fetch import OFFICIAL_MD5
from peftqa.data.location import read_bytes
from peftqa.data.reading import _stamp, detect_format, load_squad

_OFFICIAL = frozenset(OFFICIAL_MD5.values())


def fingerprint(source: str | os.PathLike, role: str = "dev") -> str:
    """The official MD5 of an official file; else 'sha256:<hex>' of the content (or of a dataset's questions)."""
    path = Path(source)
    if path.is_file():
        return _file_fingerprint(path.resolve(), _stamp(path))
    rows = [
        [e.id, e.title, e.context, e.question, list(e.answers), list(e.answer_starts)]
        for e in load_squad(source, role=role)
    ]
    return "sha256:" + hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _file_fingerprint(path: Path, stamp: tuple[int, int]) -> str:
    content = read_bytes(path)
    md5 = hashlib.md5(content).hexdigest()
    return md5 if md5 in _OFFICIAL else "sha256:" + hashlib.sha256(content).hexdigest()


def is_official(fingerprint_value: str) -> bool:
    return fingerprint_value in _OFFICIAL


def has_unanswerable(source: str | os.PathLike, role: str = "dev") -> bool:
    """Whether any question of the source has no answer (SQuAD 2.0-style data)."""
    return any(not example.answers for example in load_squad(source, role=role))


def describe_source(source: str | os.PathLike, role: str = "dev") -> dict[str, Any]:
    """What run.json records of one source: where it is, its format, its fingerprint, its questions."""
    path = Path(source)
    examples = load_squad(source, role=role)
    unanswerable = sum(not e.answers for e in examples)
    return {
        "source": str(path.resolve()) if path.exists() else str(source),
        "format": detect_format(path) if path.is_file() else "datasets",
        "fingerprint": fingerprint(source, role),
        "questions": len(examples),
        "unanswerable": unanswerable,
    }
