"""Every reader of user files, fed generated hostile files: random bytes, damaged and gzipped copies of
good files, and good files with one value anywhere replaced by something hostile (deep nesting, a
5,000-digit number, lone surrogates, NaN, infinity, wrong types). Each must load the file or raise
one PeftqaError of one line, never crash, and what it loads must be text a tokenizer takes."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftqa import files
from peftqa.data import Example, load_squad
from peftqa.errors import PeftqaError
from peftqa.inference.rescore import score_file
from peftqa.inference.run_folder import read_scores
from tests.helpers import json_paths, raw_json, replaced_json
from tests.squad_fixtures import jsonl_rows, squad_document

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_names = itertools.count()  # a new name per example: load_squad caches by path, size and time

_DOCUMENT = squad_document()
_ROWS = jsonl_rows()
_DOCUMENT_PATHS = list(json_paths(_DOCUMENT))
_ROW_PATHS = list(json_paths(_ROWS[0]))


def _check_loaded(examples: list[Example]) -> None:
    """What a reader returns is what the rest of peftqa relies on: text without lone surrogates,
    answers that point at their text."""
    assert examples
    for example in examples:
        for text in (example.id, example.question, example.context, example.title, *example.answers):
            assert isinstance(text, str) and not files.has_surrogate(text)
        for text, start in zip(example.answers, example.answer_starts, strict=True):
            assert type(start) is int and example.context[start : start + len(text)] == text


def _loads_or_one_line_error(path: Path, answers_required: bool) -> None:
    try:
        examples = load_squad(path, answers_required=answers_required)
    except PeftqaError as error:
        assert len(str(error).splitlines()) == 1 and str(path) in str(error)
    else:
        _check_loaded(examples)


def _write(folder: Path, content: bytes, gz: bool) -> Path:
    path = folder / f"q{next(_names)}.data"
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


@FUZZ
@given(where=st.sampled_from(_DOCUMENT_PATHS), raw=raw_json, gz=st.booleans(), answers=st.booleans())
def test_squad_json_with_a_hostile_value_anywhere(tmp_path, where, raw, gz, answers):
    _loads_or_one_line_error(_write(tmp_path, replaced_json(_DOCUMENT, where, raw).encode(), gz), answers)


@FUZZ
@given(
    line=st.integers(0, len(_ROWS) - 1),
    where=st.sampled_from(_ROW_PATHS),
    raw=raw_json,
    separator=st.sampled_from(["\n", "\r\n", "\n\n"]),
    bom=st.booleans(),
    answers=st.booleans(),
)
def test_json_lines_with_a_hostile_value_anywhere(tmp_path, line, where, raw, separator, bom, answers):
    lines = [json.dumps(row, ensure_ascii=False) for row in _ROWS]
    lines[line] = replaced_json(_ROWS[line], where, raw)
    content = (b"\xef\xbb\xbf" if bom else b"") + (separator.join(lines) + "\n").encode()
    _loads_or_one_line_error(_write(tmp_path, content, False), answers)


@FUZZ
@given(content=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\x1f\x8b", b"\xef\xbb\xbf", b'{"data": ']))
def test_random_bytes(tmp_path, content, prefix):
    _loads_or_one_line_error(_write(tmp_path, prefix + content, False), True)


@FUZZ
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4))
def test_good_files_cut_short_or_with_bytes_changed_plain_or_gzipped(tmp_path, cut, flips):
    for good in (json.dumps(_DOCUMENT).encode(), "".join(json.dumps(r) + "\n" for r in _ROWS).encode()):
        for gz in (False, True):
            content = bytearray(gzip.compress(good) if gz else good)
            for at, byte in flips:
                content[at % len(content)] = byte
            path = tmp_path / f"q{next(_names)}.data"
            path.write_bytes(bytes(content[: max(1, len(content) - cut)]))
            _loads_or_one_line_error(path, True)


@FUZZ
@given(raw=raw_json, where=st.sampled_from(list(json_paths({"exact_match": 1.0, "f1": 2.0, "id": "q"}))))
def test_read_json_and_scores_jsonl(tmp_path, raw, where):
    text = replaced_json({"id": "q", "exact_match": 1.0, "f1": 2.0}, where, raw)
    (tmp_path / "m.json").write_text(text)
    (tmp_path / "scores.jsonl").write_text(text + "\n")
    for read in (lambda: files.read_json(tmp_path / "m.json"), lambda: read_scores(tmp_path)):
        try:
            read()
        except PeftqaError as error:
            assert len(str(error).splitlines()) == 1


@FUZZ
@given(raw=raw_json, file=st.sampled_from(["predictions", "na_probs"]))
def test_score_reads_hostile_predictions_and_no_answer_probabilities(tmp_path, raw, file):
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(_DOCUMENT))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({row["id"]: 0.5 for row in _ROWS}))
    hostile = tmp_path / "hostile.json"
    hostile.write_text(replaced_json({"q-author": "x"}, ("q-author",), raw) if "[" not in raw[:1] else raw)
    try:
        if file == "predictions":
            result = score_file(dev, hostile, ci=True)
        else:
            answers = tmp_path / "answers.json"
            answers.write_text(json.dumps({row["id"]: "" for row in _ROWS}))
            result = score_file(dev, answers, version=2, na_probs_path=hostile)
    except PeftqaError as error:
        assert len(str(error).splitlines()) == 1
    else:
        files.to_json(result)  # what `peftqa score` prints is JSON


@pytest.mark.parametrize("gz", [False, True])
def test_an_empty_file_is_one_error(tmp_path, gz):
    _loads_or_one_line_error(_write(tmp_path, b"", gz), True)
