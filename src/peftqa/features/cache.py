"""The feature cache: features built once per (questions, tokenizer, window settings, data file) and
read back by every later run, sweep trial and evaluation that needs the same windows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from peftqa import files
from peftqa.data import Example
from peftqa.features.windows import FEATURES_VERSION, FeatureSet, build_features
from peftqa.files import cache_dir


def features_cache_dir() -> Path:
    """PEFTQA_CACHE_DIR/features when set (tests and benchmarks want cold or private caches), else the user cache."""
    return cache_dir("features")


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, normaliser, special tokens).

    Truncation and padding are left out: they are call settings that every tokenizer call (and
    `_encode_plain`) changes on the shared backend, so they would change the key between calls.
    """
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def cache_key(examples: list[Example], tokenizer, max_length: int, doc_stride: int, data_md5: str) -> str:
    ids_digest = hashlib.sha256("\n".join(e.id for e in examples).encode()).hexdigest()
    parts = [FEATURES_VERSION, tokenizer_fingerprint(tokenizer), max_length, doc_stride, data_md5, ids_digest]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def load_or_build_features(
    examples: list[Example],
    tokenizer,
    max_length: int,
    doc_stride: int,
    data_md5: str,
    cache_dir: Path | None = None,
) -> tuple[FeatureSet, bool]:
    """Features from the cache when present, else built and cached. Returns (features, from_cache)."""
    folder = cache_dir or features_cache_dir()
    path = folder / f"{cache_key(examples, tokenizer, max_length, doc_stride, data_md5)}.npz"
    if path.is_file():
        try:
            return _read_cache(path), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt, not fatal
    features = build_features(examples, tokenizer, max_length, doc_stride)
    _write_cache(path, features)
    return features, False


def _write_cache(path: Path, features: FeatureSet) -> None:
    arrays = {k: v for k, v in vars(features).items() if v is not None}
    # Data-parallel ranks on a machine without rank 0's cache may write the same features at once:
    # each writes its own temporary file, and the contents are the same.
    with files.atomic_path(path) as partial:
        np.savez(partial, **arrays)


def _read_cache(path: Path) -> FeatureSet:
    with np.load(path) as stored:
        fields: dict[str, Any] = {
            name: stored[name] if name in stored else None for name in FeatureSet.__dataclass_fields__
        }
    return FeatureSet(**fields)
