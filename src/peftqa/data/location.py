"""Where the data is: the data directory, the split files in it, and their bytes.

The data directory holds `train-v1.1.json` and `dev-v1.1.json`, plain or gzipped. It is, in order:
the `--data-dir` argument, the `PEFTQA_DATA_DIR` environment variable, `~/.cache/peftqa/squad`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

from peftqa.errors import PeftqaError
from peftqa.files import user_cache_dir

SPLIT_FILE = "{split}-v1.1.json"  # the official name of a split's file, plain; `.gz` may follow


def default_data_dir() -> Path:
    """`PEFTQA_DATA_DIR` when set, else the user cache folder."""
    env = os.environ.get("PEFTQA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir("squad")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The folder to read SQuAD from: the given one, else `default_data_dir()`."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def find_split_file(data_dir: Path, split: str) -> Path | None:
    """`<split>-v1.1.json` or its `.gz`, whichever is in `data_dir`."""
    plain = SPLIT_FILE.format(split=split)
    for name in (plain, f"{plain}.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def split_path(data_dir: str | os.PathLike | None, split: str) -> Path:
    """The file of `split`, or a PeftqaError that says how to get it."""
    folder = resolve_data_dir(data_dir)
    found = find_split_file(folder, split)
    if found is None:
        raise PeftqaError(
            f"no {SPLIT_FILE.format(split=split)}(.gz) in {folder}: run `peftqa data fetch --dest {folder}` "
            "or point --data-dir / PEFTQA_DATA_DIR at a folder holding the SQuAD v1.1 files"
        )
    return found


_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data (told by its first bytes, whatever its suffix)."""
    try:
        content = path.read_bytes()
        if content[:2] == _GZIP_MAGIC:
            return gzip.decompress(content)
        return content
    except (OSError, EOFError, zlib.error) as error:
        raise PeftqaError(f"{path}: cannot read ({error})") from error


def md5_of(path: Path) -> str:
    """MD5 of the uncompressed content, comparable with the official MD5s."""
    return hashlib.md5(read_bytes(path)).hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of the uncompressed content: the fingerprint of a question file that is not an official one."""
    return hashlib.sha256(read_bytes(path)).hexdigest()
