"""The SQuAD JSON format, v1.1 and v2.0: read a file into checked `Example`s.

Every field is checked; a broken file is one PeftqaError naming the file, the question and the field.
SQuAD 2.0 marks a question without an answer with `is_impossible: true` and empty `answers` (its
`plausible_answers` are checked like answers and not kept): such an Example has no answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from peftqa.data.example import Example, unique_questions
from peftqa.data.location import read_bytes
from peftqa.errors import PeftqaError
from peftqa.files import has_surrogate, loads_json

ATTRIBUTION = (
    "SQuAD v1.1, Rajpurkar et al. 2016, 'SQuAD: 100,000+ Questions for Machine Comprehension of Text', CC BY-SA 4.0"
)


def read_squad(path: Path, answers_required: bool = True) -> list[Example]:
    """Every question of a SQuAD JSON file (v1.1 or v2.0, plain or gzipped), in file order.

    Args:
        path: the file.
        answers_required: False for questions to be answered (`peftqa predict --file`): a question may
            then lack the `answers` field; answers that are there are still checked.
    """
    return parse_squad_document(read_json_document(path), path, answers_required)


def read_json_document(path: Path) -> object:
    """The file's JSON value, or one PeftqaError naming the file (its text fields are checked as they
    are read, to name the question)."""
    return loads_json(read_bytes(path), path, text_checked=False)


def parse_squad_document(document: object, path: Path, answers_required: bool = True) -> list[Example]:
    """The checked questions of a parsed SQuAD document (`{"data": [articles]}`)."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise PeftqaError(f"{path}: not a SQuAD file (expected an object with a 'data' list)")
    return unique_questions(_questions(document["data"], path, answers_required), path)


def _questions(articles: list, path: Path, answers_required: bool) -> Iterator[tuple[Path, Example]]:
    """(path, example) of every question, each field checked as it is reached."""
    for article in articles:
        title = article.get("title", "") if isinstance(article, dict) else ""
        if not isinstance(title, str):
            raise PeftqaError(f"{path}: an article's field 'title' should be str")
        check_text(title, "title", f"{path}: an article")
        for paragraph in _field(article, "paragraphs", list, path, f"article '{title}'"):
            context = _field(paragraph, "context", str, path, f"a paragraph of '{title}'")
            qas = _field(paragraph, "qas", list, path, f"a paragraph of '{title}'")
            if qas and not context.strip():
                raise PeftqaError(f"{path}: a paragraph of '{title}' has an empty 'context'")
            for qa in qas:
                yield path, _parse_question(qa, context, title, path, answers_required)


def _parse_question(qa: object, context: str, title: str, path: Path, answers_required: bool) -> Example:
    question_id = qa.get("id") if isinstance(qa, dict) else None
    if not isinstance(question_id, str) or not question_id:
        raise PeftqaError(f"{path}: a question of '{title}' has no string 'id'")
    check_text(question_id, "id", f"{path}: a question of '{title}'")
    where = f"question {question_id}"
    question = _field(qa, "question", str, path, where)
    impossible = qa.get("is_impossible", False) if isinstance(qa, dict) else False
    if not isinstance(impossible, bool):
        raise PeftqaError(f"{path}: {where}: field 'is_impossible' should be bool")
    if not answers_required and isinstance(qa, dict) and "answers" not in qa:
        return Example(question_id, question, context, (), (), title)
    texts, starts = _answers(_field(qa, "answers", list, path, where), context, path, where, "answers")
    if isinstance(qa, dict) and "plausible_answers" in qa:
        _answers(_field(qa, "plausible_answers", list, path, where), context, path, where, "plausible_answers")
    if impossible and texts:
        raise PeftqaError(f"{path}: {where}: field 'answers' should be empty when is_impossible is true")
    if not texts and not impossible and answers_required:
        raise PeftqaError(
            f"{path}: {where}: field 'answers' is empty (a question without an answer needs is_impossible: true, "
            "as in SQuAD 2.0)"
        )
    return Example(question_id, question, context, tuple(texts), tuple(starts), title)


def _answers(answers: list, context: str, path: Path, where: str, name: str) -> tuple[list[str], list[int]]:
    texts, starts = [], []
    for answer in answers:
        text = _field(answer, "text", str, path, f"{where}: {name}")
        start = _field(answer, "answer_start", int, path, f"{where}: {name}")
        check_answer(context, text, start, path, where)
        texts.append(text)
        starts.append(start)
    return texts, starts


def check_answer(context: str, text: str, start: int, path: Path, where: str) -> None:
    """An answer's `answer_start` must point at its text in the context."""
    if context[start : start + len(text)] != text or start < 0:
        raise PeftqaError(
            f"{path}: {where}: answer_start {start} does not point at its text {text!r} "
            f"(the context there reads {context[start : start + len(text)]!r})"
        )


def check_text(value: str, name: str, where: str) -> None:
    """A text field must be text: a lone UTF-16 surrogate ("\\ud800" in JSON) cannot be tokenised or
    written out again, and would fail after every question had been answered."""
    if has_surrogate(value):
        raise PeftqaError(f"{where}: field '{name}' holds a lone UTF-16 surrogate (not text)")


def _field(container: object, name: str, kind: type, path: Path, where: str):
    if not isinstance(container, dict) or name not in container:
        raise PeftqaError(f"{path}: {where} lacks the field '{name}'")
    value = container[name]
    # bool is an int in Python; an answer_start of `true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PeftqaError(f"{path}: {where}: field '{name}' should be {kind.__name__}")
    if isinstance(value, str):
        check_text(value, name, f"{path}: {where}")
    return value
