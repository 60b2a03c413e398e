"""Files: atomic writes, JSON, and where peftqa keeps its caches. A leaf: every module that writes uses it.

An atomic write goes to a temporary file in the target's folder (a unique name per call, so two
processes writing the same target never share one), is flushed to disk, then renamed over the target:
a reader sees the old file or the new one, never half of one, even after a kill -9 or a power cut.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
        # mkstemp makes the file owner-only: give it the mode any other new file here gets (the umask's).
        partial.chmod(0o666 & ~current_umask())
        yield partial
        with partial.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, content: bytes) -> None:
    with atomic_path(path) as partial:
        partial.write_bytes(content)


def destination_state(folder: Path, flag: str, is_ours: Callable[[Path], bool]) -> str:
    """What a folder a command is told to write (`flag`: '--out') holds, the one rule of every writer:
    "new" (missing or empty), "ours" (what peftqa writes there: `is_ours`) or "theirs" (anything else,
    which peftqa never overwrites unasked). A file, or a folder that cannot be written in, is a
    PeftqaError here, before anything is read or written."""
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise PeftqaError(f"{flag} {folder} exists and is not a folder")
    if not existing.is_dir():
        raise PeftqaError(f"cannot write to {flag} {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PeftqaError(f"cannot write to {flag} {folder}: no permission to write in {existing}")
    if existing != folder or not any(folder.iterdir()):
        return "new"
    return "ours" if is_ours(folder) else "theirs"


def current_umask() -> int:
    """The process's umask: from /proc on Linux, since os.umask can only be read by setting it, and a
    file another thread creates in between would get mode 0666."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_usual_modes(folder: Path) -> None:
    """`folder` and everything under it get the modes new files and folders get here (the umask's):
    mkdtemp and safetensors create owner-only ones."""
    umask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def to_json(value: Any, indent: int | None = None) -> str:
    """JSON text of `value`; a non-finite number (NaN, infinity) is a ValueError naming where it is:
    JSON has none, and Python's `NaN` would make the text unreadable to every other JSON reader."""
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError(f"a non-finite number at {_non_finite_at(value) or '?'} cannot be written as JSON") from None


def finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, infinity) replaced by None: for figures that may not be
    numbers (a diverged run's loss), written as JSON's null rather than as invalid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def _non_finite_at(value: Any, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the top level"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, item in items:
        found = _non_finite_at(item, f"{where}[{key!r}]")
        if found:
            return found
    return None


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    write_bytes_atomic(path, (_json_for(path, value, indent=2) + "\n").encode())


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """One JSON value a line."""
    write_bytes_atomic(path, "".join(_json_for(path, row) + "\n" for row in rows).encode())


def _json_for(path: str | os.PathLike, value: Any, indent: int | None = None) -> str:
    try:
        return to_json(value, indent)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# A JSON number with more digits than int() converts (Python's guard against slow conversions).
_LONG_NUMBER = re.compile(rf"\d{{{sys.get_int_max_str_digits() + 1},}}")
# A \\u escape of a UTF-16 surrogate: only a lone one (not half of a pair) is an error, told after parsing.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads_json(content: str | bytes, where: object, text_checked: bool = True) -> Any:
    """The JSON value of `content` (bytes: UTF-8, a byte order mark allowed), or one PeftqaError
    starting with `where` for anything that is not readable JSON: bad syntax, not UTF-8, nesting
    deeper than the parser's recursion allows, a number with more digits than Python converts, or
    (unless `text_checked` is False: a reader that checks each field itself, to name it) a string
    holding a lone UTF-16 surrogate ("\\ud800"), which no UTF-8 text can hold."""
    try:
        text = content.decode("utf-8-sig") if isinstance(content, bytes) else content.removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise PeftqaError(f"{where}: not UTF-8 text ({error})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise PeftqaError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise PeftqaError(f"{where}: not readable JSON (nested deeper than the reader allows)") from None
    except ValueError as error:  # json gives int() every integer: more than its digit limit is a ValueError
        raise PeftqaError(f"{where}: not readable JSON ({_long_number(text) or error})") from None
    if text_checked and _SURROGATE_ESCAPE.search(text):
        bad = surrogate_in(value)
        if bad is not None:
            raise PeftqaError(f"{where}: {bad} holds a lone UTF-16 surrogate escape (not text)")
    return value


def _long_number(text: str) -> str | None:
    found = _LONG_NUMBER.search(text)
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    return (
        f"line {line} column {column}: a number of {len(found.group()):,} digits; "
        f"at most {sys.get_int_max_str_digits():,} are read"
    )


def has_surrogate(text: str) -> bool:
    """Whether `text` holds a lone UTF-16 surrogate, which cannot be written as UTF-8 (nor tokenised)."""
    return _SURROGATE.search(text) is not None


def surrogate_in(value: Any, where: str = "a string") -> str | None:
    """Where in a parsed JSON value a string (or key) holds a lone surrogate ('field 'id''), else None."""
    if isinstance(value, str):
        return where if has_surrogate(value) else None
    if isinstance(value, list):
        return next((w for item in value if (w := surrogate_in(item, where)) is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if has_surrogate(key):
                return f"a key ({key.encode('utf-8', 'backslashreplace').decode()!r})"
            found = surrogate_in(item, f"field '{key}'")
            if found is not None:
                return found
    return None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value, or a PeftqaError naming the file when it is missing or not readable JSON
    (`loads_json`)."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise PeftqaError(f"{path} is missing") from None
    except OSError as error:
        raise PeftqaError(f"{path}: cannot read ({error.strerror or error})") from None
    return loads_json(content, path)


def user_cache_dir(name: str) -> Path:
    """`name` in peftqa's folder of the user cache ($XDG_CACHE_HOME or ~/.cache): squad, models, features."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peftqa" / name


def cache_dir(name: str) -> Path:
    """PEFTQA_CACHE_DIR/`name` when set (tests and benchmarks want cold or private caches), else
    user_cache_dir(name): for what peftqa derives and can make again (features, ONNX exports)."""
    env = os.environ.get("PEFTQA_CACHE_DIR")
    return Path(env) / name if env else user_cache_dir(name)
