"""JSON Lines in the Hugging Face `datasets` SQuAD layout, one question a line:

    {"id": "q1", "title": "optional", "context": "...", "question": "...",
     "answers": {"text": ["..."], "answer_start": [12]}}

Empty answer lists mark a question without an answer (SQuAD 2.0). Every field is checked as the
SQuAD reader checks it; an error names the file, the line and the field. `parse_row` is shared
with the `datasets` reader, whose rows have the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from peftqa.data.example import Example, unique_questions
from peftqa.data.location import read_bytes
from peftqa.data.squad import check_answer, check_text
from peftqa.errors import PeftqaError
from peftqa.files import loads_json


def read_jsonl(path: Path, answers_required: bool = True) -> list[Example]:
    """Every question of a JSON Lines file (plain or gzipped, a byte order mark allowed), in file order;
    blank lines are skipped."""
    try:
        text = read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PeftqaError(f"{path}: not UTF-8 text ({error})") from error
    rows = []
    # Lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085 and others, which JSON
    # strings may hold as they are (a "\r" before the "\n" is white space to the JSON reader).
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        rows.append((f"{path}:{number}", loads_json(line, f"{path}:{number}", text_checked=False)))
    return parse_rows(rows, path, answers_required)


def parse_rows(rows: Iterable[tuple[str, object]], source: object, answers_required: bool = True) -> list[Example]:
    """Checked Examples of (where, row) pairs: ids unique, at least one question."""
    return unique_questions(((where, parse_row(row, where, answers_required)) for where, row in rows), source)


def parse_row(row: object, where: str, answers_required: bool = True) -> Example:
    """One question in the `datasets` SQuAD layout; `where` ('file:line') starts every error."""
    if not isinstance(row, dict):
        raise PeftqaError(f"{where}: expected a JSON object with id, context, question and answers")
    question_id = _field(row, "id", str, where)
    if not question_id:
        raise PeftqaError(f"{where}: field 'id' is empty")
    at = f"{where}: question {question_id}"
    title = _field(row, "title", str, at) if row.get("title") is not None else ""
    context = _field(row, "context", str, at)
    if not context.strip():
        raise PeftqaError(f"{at}: field 'context' is empty")
    question = _field(row, "question", str, at)
    if not answers_required and "answers" not in row:
        return Example(question_id, question, context, (), (), title)
    answers = _field(row, "answers", dict, at)
    texts = _field(answers, "text", list, f"{at}: answers")
    starts = _field(answers, "answer_start", list, f"{at}: answers")
    if len(texts) != len(starts):
        raise PeftqaError(f"{at}: answers has {len(texts)} 'text' and {len(starts)} 'answer_start' values")
    for text, start in zip(texts, starts, strict=True):
        if not isinstance(text, str):
            raise PeftqaError(f"{at}: answers: field 'text' should hold strings")
        check_text(text, "text", f"{at}: answers")
        if not isinstance(start, int) or isinstance(start, bool):
            raise PeftqaError(f"{at}: answers: field 'answer_start' should hold integers")
        check_answer(context, text, start, Path(where), f"question {question_id}")
    return Example(question_id, question, context, tuple(texts), tuple(starts), title)


def _field(row: dict, name: str, kind: type, where: str):
    if name not in row:
        raise PeftqaError(f"{where} lacks the field '{name}'")
    value = row[name]
    if not isinstance(value, kind):
        raise PeftqaError(f"{where}: field '{name}' should be {kind.__name__}")
    if isinstance(value, str):
        check_text(value, name, where)
    return value
