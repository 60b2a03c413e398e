"""Examples -> model features: sliding windows over the context, labels and context offsets.

Every feature keeps the index of its example, its start/end labels (the CLS token, index 0, when
the window does not hold the whole answer) and character offsets that are (-1, -1) outside the
context, so that a predicted span can never come from the question or the special tokens.
Features are cached on disk, keyed by tokenizer, lengths and data, so a second run does not
tokenise again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peftqa.data import Example

FEATURES_VERSION = 2  # bump when the layout or the labelling rule changes: old caches are ignored
MAX_QUESTION_TOKENS = 64  # longer questions are cut so that every window keeps room for context
_TOKENIZE_CHUNK = 2000  # examples per tokenizer call: bounds peak memory on all of SQuAD train


@dataclass
class FeatureSet:
    """Features stored flat (one array per field, rows delimited by `row_starts`), cheap to cache."""

    input_ids: np.ndarray  # int32, all rows concatenated
    token_type_ids: np.ndarray | None  # int8, same layout; None for models without segments
    offsets: np.ndarray  # int32 (n_tokens, 2); (-1, -1) outside the context
    row_starts: np.ndarray  # int64 (n_rows + 1,): row i is [row_starts[i], row_starts[i+1])
    example_index: np.ndarray  # int32 (n_rows,): index into the example list
    start_positions: np.ndarray  # int32 (n_rows,)
    end_positions: np.ndarray  # int32 (n_rows,)

    def __len__(self) -> int:
        return len(self.example_index)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.row_starts)

    def row(self, i: int) -> slice:
        return slice(int(self.row_starts[i]), int(self.row_starts[i + 1]))

    def row_offsets(self, i: int) -> np.ndarray:
        return self.offsets[self.row(i)]

    def select(self, rows: np.ndarray) -> FeatureSet:
        """A new FeatureSet holding only `rows`, in that order."""
        pieces = [self.row(int(i)) for i in rows]
        lengths = np.array([p.stop - p.start for p in pieces], dtype=np.int64)
        gather = np.concatenate([np.arange(p.start, p.stop) for p in pieces]) if pieces else np.zeros(0, int)
        return FeatureSet(
            input_ids=self.input_ids[gather],
            token_type_ids=None if self.token_type_ids is None else self.token_type_ids[gather],
            offsets=self.offsets[gather],
            row_starts=np.concatenate([[0], np.cumsum(lengths)]),
            example_index=self.example_index[rows],
            start_positions=self.start_positions[rows],
            end_positions=self.end_positions[rows],
        )


def build_features(examples: list[Example], tokenizer, max_length: int = 384, doc_stride: int = 128) -> FeatureSet:
    """Tokenise question + context into overlapping windows and label the first gold answer.

    Args:
        examples: the questions (every gold answer is kept on the Example; the first is the label).
        tokenizer: a fast tokenizer (offset mappings are needed).
        max_length: tokens per window, question and special tokens included.
        doc_stride: tokens shared by consecutive windows of one context.
    """
    if doc_stride >= max_length - MAX_QUESTION_TOKENS - 3:
        raise ValueError(f"doc_stride {doc_stride} too large for max_length {max_length}")
    parts: list[FeatureSet] = []
    for first in range(0, len(examples), _TOKENIZE_CHUNK):
        chunk = examples[first : first + _TOKENIZE_CHUNK]
        parts.append(_build_chunk(chunk, first, tokenizer, max_length, doc_stride))
    return concatenate(parts)


def _shorten_questions(questions: list[str], tokenizer) -> list[str]:
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    shortened = []
    for question, offsets in zip(questions, encoded["offset_mapping"], strict=True):
        if len(offsets) > MAX_QUESTION_TOKENS:
            question = question[: offsets[MAX_QUESTION_TOKENS - 1][1]]
        shortened.append(question)
    return shortened


def _build_chunk(examples: list[Example], first_index: int, tokenizer, max_length: int, stride: int) -> FeatureSet:
    # Leading white space in some SQuAD questions would only waste window tokens.
    questions = _shorten_questions([e.question.lstrip() for e in examples], tokenizer)
    encoded = tokenizer(
        questions,
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    sample_map = encoded["overflow_to_sample_mapping"]
    has_segments = "token_type_ids" in encoded
    ids_rows, segment_rows, offset_rows, starts, ends = [], [], [], [], []
    for row, example_pos in enumerate(sample_map):
        offsets = np.asarray(encoded["offset_mapping"][row], dtype=np.int32).reshape(-1, 2)
        in_context = np.asarray([s == 1 for s in encoded.sequence_ids(row)])
        offsets[~in_context] = -1
        example = examples[example_pos]
        # Questions asked at prediction time have no answer: they get the CLS label.
        if example.answers:
            start, end = _label(offsets, in_context, example.answer_starts[0], len(example.answers[0]))
        else:
            start, end = 0, 0
        ids_rows.append(np.asarray(encoded["input_ids"][row], dtype=np.int32))
        if has_segments:
            segment_rows.append(np.asarray(encoded["token_type_ids"][row], dtype=np.int8))
        offset_rows.append(offsets)
        starts.append(start)
        ends.append(end)
    lengths = np.array([len(r) for r in ids_rows], dtype=np.int64)
    return FeatureSet(
        input_ids=np.concatenate(ids_rows),
        token_type_ids=np.concatenate(segment_rows) if has_segments else None,
        offsets=np.concatenate(offset_rows),
        row_starts=np.concatenate([[0], np.cumsum(lengths)]),
        example_index=np.asarray(sample_map, dtype=np.int32) + first_index,
        start_positions=np.asarray(starts, dtype=np.int32),
        end_positions=np.asarray(ends, dtype=np.int32),
    )


def _label(offsets: np.ndarray, in_context: np.ndarray, answer_start: int, answer_length: int) -> tuple[int, int]:
    """Token indices of the answer in this window, or (0, 0) (CLS) when it is not wholly inside."""
    answer_end = answer_start + answer_length
    context_tokens = np.flatnonzero(in_context)
    if len(context_tokens) == 0:
        return 0, 0
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first, 0] > answer_start or offsets[last, 1] < answer_end:
        return 0, 0
    # The start token is the last context token starting at or before the answer's first character;
    # the end token the first one ending at or after its last character.
    token_start = first + int(np.searchsorted(offsets[first : last + 1, 0], answer_start, side="right")) - 1
    token_end = first + int(np.searchsorted(offsets[first : last + 1, 1], answer_end, side="left"))
    return int(token_start), int(min(token_end, last))


def concatenate(parts: list[FeatureSet]) -> FeatureSet:
    """One FeatureSet from several built over consecutive slices of one example list."""
    if len(parts) == 1:
        return parts[0]
    shifts = np.cumsum([0] + [p.row_starts[-1] for p in parts[:-1]])
    return FeatureSet(
        input_ids=np.concatenate([p.input_ids for p in parts]),
        token_type_ids=None if parts[0].token_type_ids is None else np.concatenate([p.token_type_ids for p in parts]),
        offsets=np.concatenate([p.offsets for p in parts]),
        row_starts=np.concatenate([[0]] + [p.row_starts[1:] + s for p, s in zip(parts, shifts, strict=True)]),
        example_index=np.concatenate([p.example_index for p in parts]),
        start_positions=np.concatenate([p.start_positions for p in parts]),
        end_positions=np.concatenate([p.end_positions for p in parts]),
    )


# ---------------------------------------------------------------------------- cache


def features_cache_dir() -> Path:
    env = os.environ.get("PEFTQA_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peftqa"
    return base / "features"


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, normaliser, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in vars(features).items() if v is not None}
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


def _read_cache(path: Path) -> FeatureSet:
    with np.load(path) as stored:
        fields = {name: stored[name] if name in stored else None for name in FeatureSet.__dataclass_fields__}
    return FeatureSet(**fields)
