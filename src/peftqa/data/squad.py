"""The SQuAD v1.1 format: read a file into checked `Example`s.

Every field is checked; a broken file is one PeftqaError naming the file and the question.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftqa.data.example import Example
from peftqa.data.location import read_bytes
from peftqa.errors import PeftqaError

ATTRIBUTION = (
    "SQuAD v1.1, Rajpurkar et al. 2016, 'SQuAD: 100,000+ Questions for Machine Comprehension of Text', CC BY-SA 4.0"
)


def read_squad(path: Path) -> list[Example]:
    """Every question of a SQuAD v1.1 file (`.json` or `.json.gz`), in file order."""
    try:
        document = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftqaError(f"{path}: not valid JSON ({error})") from error
    return _parse_document(document, path)


def _parse_document(document: object, path: Path) -> list[Example]:
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise PeftqaError(f"{path}: not a SQuAD file (expected an object with a 'data' list)")
    examples: list[Example] = []
    seen_ids: set[str] = set()
    for article in document["data"]:
        title = article.get("title", "") if isinstance(article, dict) else ""
        for paragraph in _field(article, "paragraphs", list, path, f"article '{title}'"):
            context = _field(paragraph, "context", str, path, f"a paragraph of '{title}'")
            for qa in _field(paragraph, "qas", list, path, f"a paragraph of '{title}'"):
                example = _parse_question(qa, context, title, path)
                if example.id in seen_ids:
                    raise PeftqaError(f"{path}: question id {example.id} appears twice")
                seen_ids.add(example.id)
                examples.append(example)
    if not examples:
        raise PeftqaError(f"{path}: holds no questions")
    return examples


def _parse_question(qa: object, context: str, title: str, path: Path) -> Example:
    question_id = qa.get("id") if isinstance(qa, dict) else None
    if not isinstance(question_id, str) or not question_id:
        raise PeftqaError(f"{path}: a question of '{title}' has no string 'id'")
    where = f"question {question_id}"
    question = _field(qa, "question", str, path, where)
    answers = _field(qa, "answers", list, path, where)
    texts, starts = [], []
    for answer in answers:
        text = _field(answer, "text", str, path, where)
        start = _field(answer, "answer_start", int, path, where)
        if context[start : start + len(text)] != text:
            raise PeftqaError(
                f"{path}: {where}: answer_start {start} does not point at its text {text!r} "
                f"(the context there reads {context[start : start + len(text)]!r})"
            )
        texts.append(text)
        starts.append(start)
    if not texts:
        raise PeftqaError(f"{path}: {where} has no answers (SQuAD v1.1 questions all have one)")
    return Example(question_id, question, context, tuple(texts), tuple(starts), title)


def _field(container: object, name: str, kind: type, path: Path, where: str):
    if not isinstance(container, dict) or name not in container:
        raise PeftqaError(f"{path}: {where} lacks the field '{name}'")
    value = container[name]
    # bool is an int in Python; an answer_start of `true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PeftqaError(f"{path}: {where}: field '{name}' should be {kind.__name__}")
    return value
