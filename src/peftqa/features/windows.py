"""Examples -> model features: sliding windows over the context, labels and context offsets.

Every feature keeps the index of its example, its start/end labels (the CLS token, index 0, when
the window does not hold the whole answer) and character offsets that are (-1, -1) outside the
context, so that a predicted span can never come from the question or the special tokens.
Features are cached on disk, keyed by tokenizer, lengths and data, so a second run does not
tokenise again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

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


def build_features(
    examples: list[Example],
    tokenizer,
    max_length: int,
    doc_stride: int,
    chunk_size: int = _TOKENIZE_CHUNK,
    pairwise: bool = False,
) -> FeatureSet:
    """Tokenise question + context into overlapping windows and label the first gold answer.

    Args:
        examples: the questions (every gold answer is kept on the Example; the first is the label).
        tokenizer: a fast tokenizer (offset mappings are needed).
        max_length: tokens per window, question and special tokens included.
        doc_stride: tokens shared by consecutive windows of one context.
        chunk_size: examples per tokenizer call; bounds peak memory, never changes the features.
        pairwise: let the tokenizer window every (question, context) pair with its own truncation, as it
            does for a tokenizer whose pair layout cannot be reproduced: slower, and the reference the
            default path (each distinct context tokenised once) must equal exactly.
    """
    if doc_stride >= max_length - MAX_QUESTION_TOKENS - 3:
        raise ValueError(f"doc_stride {doc_stride} too large for max_length {max_length}")
    template = None if pairwise else pair_template(tokenizer)
    if template is None:  # a tokenizer whose pair layout we cannot reproduce: let it window every pair
        build_chunk = _build_chunk
    else:
        contexts = _ContextTokens(examples, tokenizer, chunk_size)
        build_chunk = partial(_build_chunk_windows, template=template, contexts=contexts)
    parts: list[FeatureSet] = []
    for first in range(0, len(examples), chunk_size):
        chunk = examples[first : first + chunk_size]
        parts.append(build_chunk(chunk, first, tokenizer, max_length, doc_stride))
    return concatenate(parts)


# ---------------------------------------------------------------------------- fast path
# SQuAD asks about five questions per paragraph, and the tokenizer encodes the two sequences of a
# pair independently. So each distinct context is tokenised once, each question once, and the
# windows are cut here with the tokenizer's own overflow rule and special-token layout: the same
# FeatureSet as tokenising every (question, context) pair, about 3x faster on SQuAD train.


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (question, context) pair."""

    prefix: np.ndarray  # ids before the question ([CLS])
    middle: np.ndarray  # ids between question and context ([SEP], or </s></s>)
    suffix: np.ndarray  # ids after the context ([SEP])
    segments: tuple[np.ndarray, int, np.ndarray, int, np.ndarray]  # token types of the five parts

    @property
    def added(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def pair_template(tokenizer) -> PairTemplate | None:
    """The tokenizer's pair layout, checked on a probe pair; None when it cannot be reproduced."""
    probe_question, probe_context = "Who wrote it, and when?", "It was written (by Ann) in 1850, in Paris."
    pair = tokenizer(probe_question, probe_context, return_offsets_mapping=True, return_token_type_ids=True)
    sequence_ids = pair.sequence_ids(0)
    question = [i for i, s in enumerate(sequence_ids) if s == 0]
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not question or not context or question[-1] >= context[0]:
        return None
    ids = np.asarray(pair["input_ids"], dtype=np.int32)
    types = np.asarray(pair["token_type_ids"], dtype=np.int8)
    q0, q1, c0, c1 = question[0], question[-1] + 1, context[0], context[-1] + 1
    template = PairTemplate(
        prefix=ids[:q0],
        middle=ids[q1:c0],
        suffix=ids[c1:],
        segments=(types[:q0], int(types[q0]), types[q1:c0], int(types[c0]), types[c1:]),
    )
    # The layout holds only if the pair is exactly its two sequences encoded alone, plus the template.
    alone = tokenizer([probe_question, probe_context], add_special_tokens=False, return_offsets_mapping=True)
    rebuilt = np.concatenate([template.prefix, alone["input_ids"][0], template.middle, alone["input_ids"][1]])
    rebuilt = np.concatenate([rebuilt, template.suffix])
    same_offsets = [tuple(o) for o in alone["offset_mapping"][1]] == [tuple(o) for o in pair["offset_mapping"][c0:c1]]
    if not (np.array_equal(rebuilt, ids) and same_offsets and len(set(types[q0:q1])) == len(set(types[c0:c1])) == 1):
        return None
    return template


def _encode_plain(tokenizer, texts: list[str], with_offsets: bool = True) -> list:
    """Rust encodings of `texts` without special tokens, truncation or padding.

    The backend is called directly: the transformers wrapper converts every encoding to Python
    lists, which costs more than the tokenisation itself. It sets truncation and padding on the
    shared backend before each of its own calls, so clearing them here disturbs nothing.
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    # encode_batch_fast skips the offset bookkeeping (its offsets are wrong, its ids the same).
    encode = backend.encode_batch if with_offsets else backend.encode_batch_fast
    return encode(texts, add_special_tokens=False)


class _ContextTokens:
    """Ids and character offsets of every distinct context of an example list, tokenised once."""

    def __init__(self, examples: list[Example], tokenizer, chunk_size: int) -> None:
        self.index: dict[str, int] = {}
        for example in examples:
            self.index.setdefault(example.context, len(self.index))
        texts = list(self.index)
        self.ids: list[np.ndarray] = []
        self.offsets: list[np.ndarray] = []
        for first in range(0, len(texts), chunk_size):
            for encoding in _encode_plain(tokenizer, texts[first : first + chunk_size]):
                self.ids.append(np.asarray(encoding.ids, dtype=np.int32))
                self.offsets.append(np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2))

    def of(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
        position = self.index[example.context]
        return self.ids[position], self.offsets[position]


def window_starts(n_tokens: int, budget: int, stride: int) -> range:
    """First token of each window, as the tokenizer's overflow rule cuts them.

    Windows hold `budget` context tokens and start every `budget - stride` tokens, the last one
    being the first to reach the end of the context.
    """
    if n_tokens <= budget:
        return range(1)
    step = budget - stride
    return range(0, step * (1 + -(-(n_tokens - budget) // step)), step)


def _build_chunk_windows(
    examples: list[Example],
    first_index: int,
    tokenizer,
    max_length: int,
    stride: int,
    template: PairTemplate,
    contexts: _ContextTokens,
) -> FeatureSet:
    question_ids = _question_ids([e.question.lstrip() for e in examples], tokenizer)
    # First pass: which windows, and how long each row is, so the arrays are filled in place.
    windows: list[tuple[int, int, int]] = []  # (example position, window start, context tokens in the window)
    for position, (example, question) in enumerate(zip(examples, question_ids, strict=True)):
        n_context = len(contexts.of(example)[0])
        budget = max_length - len(question) - template.added
        if budget <= stride:
            raise ValueError(f"doc_stride {stride} too large for max_length {max_length}")
        windows.extend((position, s, min(budget, n_context - s)) for s in window_starts(n_context, budget, stride))
    head_lengths = np.array([len(question_ids[w[0]]) for w in windows], dtype=np.int64) + len(template.prefix)
    head_lengths += len(template.middle)
    lengths = head_lengths + [w[2] for w in windows] + len(template.suffix)
    row_starts = np.concatenate([[0], np.cumsum(lengths)])
    input_ids = np.empty(row_starts[-1], dtype=np.int32)
    offsets = np.full((row_starts[-1], 2), -1, dtype=np.int32)
    has_segments = "token_type_ids" in tokenizer.model_input_names
    segments = np.empty(row_starts[-1], dtype=np.int8) if has_segments else None
    starts = np.zeros(len(windows), dtype=np.int32)
    ends = np.zeros(len(windows), dtype=np.int32)
    prefix_types, question_type, middle_types, context_type, suffix_types = template.segments
    for row, (position, window_start, n_window) in enumerate(windows):
        example, question = examples[position], question_ids[position]
        context_ids, context_offsets = contexts.of(example)
        at, head = int(row_starts[row]), int(head_lengths[row])
        # Layout of a row: prefix, question, middle, context window, suffix.
        marks = np.cumsum([at, len(template.prefix), len(question), len(template.middle), n_window])
        input_ids[marks[0] : marks[1]] = template.prefix
        input_ids[marks[1] : marks[2]] = question
        input_ids[marks[2] : marks[3]] = template.middle
        input_ids[marks[3] : marks[4]] = context_ids[window_start : window_start + n_window]
        input_ids[marks[4] : row_starts[row + 1]] = template.suffix
        window_offsets = context_offsets[window_start : window_start + n_window]
        offsets[marks[3] : marks[4]] = window_offsets
        if segments is not None:
            segments[marks[0] : marks[1]] = prefix_types
            segments[marks[1] : marks[2]] = question_type
            segments[marks[2] : marks[3]] = middle_types
            segments[marks[3] : marks[4]] = context_type
            segments[marks[4] : row_starts[row + 1]] = suffix_types
        starts[row], ends[row] = _label_example(example, window_offsets, head)
    return FeatureSet(
        input_ids=input_ids,
        token_type_ids=segments,
        offsets=offsets,
        row_starts=row_starts,
        example_index=np.array([w[0] for w in windows], dtype=np.int32) + first_index,
        start_positions=starts,
        end_positions=ends,
    )


def _label_example(example: Example, context_offsets: np.ndarray, first: int) -> tuple[int, int]:
    # Questions asked at prediction time have no answer: they get the CLS label.
    if not example.answers:
        return 0, 0
    return _label(context_offsets, first, example.answer_starts[0], len(example.answers[0]))


# ---------------------------------------------------------------------------- pair path


def _shorten_questions(questions: list[str], tokenizer) -> list[str]:
    """Questions cut to MAX_QUESTION_TOKENS tokens, by characters so the pair re-tokenises the same text."""
    lengths = [len(e.ids) for e in _encode_plain(tokenizer, questions, with_offsets=False)]
    long = [i for i, n in enumerate(lengths) if n > MAX_QUESTION_TOKENS]  # rare: offsets only for these
    shortened = list(questions)
    for i, encoding in zip(long, _encode_plain(tokenizer, [questions[i] for i in long]), strict=True):
        shortened[i] = questions[i][: encoding.offsets[MAX_QUESTION_TOKENS - 1][1]]
    return shortened


def _question_ids(questions: list[str], tokenizer) -> list[np.ndarray]:
    """Token ids of each question as the pair would hold it (shortened, no special tokens)."""
    ids = [np.asarray(e.ids, dtype=np.int32) for e in _encode_plain(tokenizer, questions, with_offsets=False)]
    long = [i for i, row in enumerate(ids) if len(row) > MAX_QUESTION_TOKENS]
    shortened = _shorten_questions([questions[i] for i in long], tokenizer)
    for i, encoding in zip(long, _encode_plain(tokenizer, shortened, with_offsets=False), strict=True):
        ids[i] = np.asarray(encoding.ids, dtype=np.int32)
    return ids


def _build_chunk(examples: list[Example], first_index: int, tokenizer, max_length: int, stride: int) -> FeatureSet:
    """Every (question, context) pair through the tokenizer's own truncation: the reference path."""
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
        context_tokens = np.flatnonzero(in_context)  # contiguous: the context follows the question
        first = int(context_tokens[0]) if len(context_tokens) else 0
        start, end = _label_example(examples[example_pos], offsets[context_tokens], first)
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


def _label(context_offsets: np.ndarray, first: int, answer_start: int, answer_length: int) -> tuple[int, int]:
    """Token indices of the answer in this window, or (0, 0) (CLS) when it is not wholly inside.

    `context_offsets` are the window's context tokens, the first of which is row token `first`.
    """
    answer_end = answer_start + answer_length
    if len(context_offsets) == 0 or context_offsets[0, 0] > answer_start or context_offsets[-1, 1] < answer_end:
        return 0, 0
    # The start token is the last context token starting at or before the answer's first character;
    # the end token the first one ending at or after its last character.
    token_start = int(np.searchsorted(context_offsets[:, 0], answer_start, side="right")) - 1
    token_end = int(np.searchsorted(context_offsets[:, 1], answer_end, side="left"))
    return first + token_start, first + min(token_end, len(context_offsets) - 1)


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
