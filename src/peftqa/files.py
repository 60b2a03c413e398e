"""Files: atomic writes, JSON, and where peftqa keeps its caches. A leaf: every module that writes uses it.

An atomic write goes to a temporary file in the target's folder (a unique name per call, so two
processes writing the same target never share one), is flushed to disk, then renamed over the target:
a reader sees the old file or the new one, never half of one, even after a kill -9 or a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; renamed over `path` when the block ends.

    The temporary name keeps `path`'s suffix, for writers that choose the format from it (numpy,
    matplotlib). If the block raises, the temporary file is removed and `path` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".partial{target.suffix}")
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        with partial.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, content: bytes) -> None:
    with atomic_path(path) as partial:
        partial.write_bytes(content)


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    write_bytes_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """One JSON value a line."""
    write_bytes_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value, or a PeftqaError naming the file when it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PeftqaError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftqaError(f"{path}: not valid JSON ({error})") from error


def user_cache_dir(name: str) -> Path:
    """`name` in peftqa's folder of the user cache ($XDG_CACHE_HOME or ~/.cache): squad, models, features."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peftqa" / name


def cache_dir(name: str) -> Path:
    """PEFTQA_CACHE_DIR/`name` when set (tests and benchmarks want cold or private caches), else
    user_cache_dir(name): for what peftqa derives and can make again (features, ONNX exports)."""
    env = os.environ.get("PEFTQA_CACHE_DIR")
    return Path(env) / name if env else user_cache_dir(name)
