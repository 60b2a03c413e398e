"""The JSON Lines reader (the `datasets` SQuAD layout): same Examples as SQuAD JSON, one-line errors."""

from __future__ import annotations

import json

import pytest

from peftqa.data import detect_format, load_squad
from peftqa.errors import PeftqaError
from tests.squad_fixtures import jsonl_rows, squad_document, v2_articles, write_jsonl, write_v2


def test_jsonl_plain_or_gzipped_reads_into_the_same_examples_as_squad_json(tmp_path, squad_dir):
    from_json = load_squad(squad_dir / "dev-v1.1.json")
    plain = load_squad(write_jsonl(tmp_path / "dev.jsonl", jsonl_rows()))
    gzipped = load_squad(write_jsonl(tmp_path / "dev.data", jsonl_rows(), gz=True))  # any name: told by content
    assert plain == gzipped == from_json
    assert detect_format(tmp_path / "dev.jsonl") == "jsonl" and detect_format(squad_dir / "dev-v1.1.json") == "squad"


def test_v2_jsonl_and_v2_json_give_the_same_unanswerable_examples(tmp_path):
    from_json = load_squad(write_v2(tmp_path / "dev-v2.json"))
    from_jsonl = load_squad(write_jsonl(tmp_path / "dev-v2.jsonl", jsonl_rows(v2_articles())))
    assert from_json == from_jsonl
    none = [e for e in from_jsonl if not e.answers]
    assert [e.id for e in none] == ["q-austen-none", "q-austen-none2", "q-cafe-none", "q-cafe-none2"]
    assert all(e.answer_starts == () for e in none)


def test_a_file_without_titles_and_blank_lines_reads(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "title"} for row in jsonl_rows()]
    path = tmp_path / "q.jsonl"
    path.write_text("\n" + "\n\n".join(json.dumps(row) for row in rows) + "\n")
    examples = load_squad(path)
    assert len(examples) == 6 and {e.title for e in examples} == {""}


def test_questions_to_answer_may_lack_answers(tmp_path):
    path = write_jsonl(tmp_path / "ask.jsonl", jsonl_rows(answers=False))
    with pytest.raises(PeftqaError, match=r"ask\.jsonl:1: question q-author lacks the field 'answers'"):
        load_squad(path)
    asked = load_squad(path, answers_required=False)
    assert len(asked) == 6 and all(e.answers == () for e in asked)


def _broken(tmp_path, change) -> str:
    rows = jsonl_rows()
    change(rows)
    return str(write_jsonl(tmp_path / "bad.jsonl", rows))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[1].pop("question"), r"bad\.jsonl:2: question q-year lacks the field 'question'"),
        (lambda rows: rows[2].update(context=7), r"bad\.jsonl:3: question q-publisher: field 'context' should be str"),
        (lambda rows: rows[0].update(context="  "), r"bad\.jsonl:1: question q-author: field 'context' is empty"),
        (lambda rows: rows[0].pop("id"), r"bad\.jsonl:1 lacks the field 'id'"),
        (lambda rows: rows[3].update(id="q-author"), r"bad\.jsonl:4: question id q-author appears twice"),
        (
            lambda rows: rows[0]["answers"].update(answer_start=[3]),
            r"bad\.jsonl:1: question q-author: answer_start 3 does not point at its text 'Jane Austen'",
        ),
        (
            lambda rows: rows[0]["answers"].update(answer_start=["35"]),
            r"bad\.jsonl:1: question q-author: answers: field 'answer_start' should hold integers",
        ),
        (
            lambda rows: rows[1]["answers"].update(text=["1813"]),
            r"bad\.jsonl:2: question q-year: answers has 1 'text' and 2 'answer_start' values",
        ),
        (lambda rows: rows[0].update(answers=["Jane Austen"]), r"bad\.jsonl:1: question q-author: field 'answers'"),
    ],
)
def test_bad_rows_name_file_line_id_and_field(tmp_path, change, message):
    with pytest.raises(PeftqaError, match=message) as error:
        load_squad(_broken(tmp_path, change))
    assert "\n" not in str(error.value)


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", jsonl_rows()[:2])
    path.write_text(path.read_text() + "{oops\n")
    with pytest.raises(PeftqaError, match=r"bad\.jsonl:3: not valid JSON"):
        load_squad(path)


def test_a_pretty_printed_squad_file_is_still_squad(tmp_path):
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(squad_document(), indent=2))
    assert detect_format(path) == "squad" and len(load_squad(path)) == 6


def test_line_separators_inside_strings_stay_in_their_line(tmp_path):
    rows = jsonl_rows()
    rows[0]["question"] = "Who\u2028wrote\u0085it\x1c?"  # str.splitlines would cut the line at each of these
    path = tmp_path / "q.jsonl"
    path.write_text("\r\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\r\n", encoding="utf-8")
    examples = load_squad(path)
    assert len(examples) == 6 and examples[0].question == "Who\u2028wrote\u0085it\x1c?"


def test_a_byte_order_mark_is_accepted_as_in_squad_json(tmp_path):
    path = write_jsonl(tmp_path / "bom.jsonl", jsonl_rows())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert detect_format(path) == "jsonl" and len(load_squad(path)) == 6


def test_a_first_line_longer_than_the_format_peek_is_still_json_lines(tmp_path):
    from peftqa.data import reading

    rows = jsonl_rows()
    rows[0]["context"] += " " + "x" * (reading._PEEK_BYTES + 10)
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    assert detect_format(path) == "jsonl"
    examples = load_squad(path)
    assert len(examples) == 6 and len(examples[0].context) > reading._PEEK_BYTES


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, r"bad\.jsonl:3: not readable JSON \(nested deeper"),
        ('{"id": "x", "n": ' + "9" * 5000 + "}", r"bad\.jsonl:3: not readable JSON \(.*5,000 digits"),
        ('{"id": "q\\udc00", "context": "c", "question": "q"}', r"bad\.jsonl:3: field 'id' holds a lone UTF-16 surro"),
        ('{"id": "x", "context": "c\\ud800", "question": "q"}', r"bad\.jsonl:3: question x: field 'context' holds"),
        ('{"id": "x", "context": "c", "question": "\\udfff?"}', r"bad\.jsonl:3: question x: field 'question' holds"),
    ],
)
def test_hostile_lines_are_one_line_errors_naming_file_line_and_field(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", jsonl_rows()[:2])
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(PeftqaError, match=message) as error:
        load_squad(path, answers_required=False)
    assert len(str(error.value).splitlines()) == 1


def test_a_surrogate_pair_is_text(tmp_path):
    rows = jsonl_rows()
    rows[0]["question"] = "Who wrote it? \U0001f600"
    path = tmp_path / "emoji.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))  # ASCII JSON: the pair as two \u escapes
    assert "\\ud83d\\ude00" in path.read_text()
    assert load_squad(path)[0].question.endswith("\U0001f600")
