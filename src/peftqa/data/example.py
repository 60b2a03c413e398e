"""`Example`: one question with its context and gold answers, what every reader returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from peftqa.errors import PeftqaError


@dataclass(frozen=True)
class Example:
    """One SQuAD question with its context and every gold answer (text and character start)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    title: str = ""


def unique_questions(found: Iterable[tuple[object, Example]], source: object) -> list[Example]:
    """The examples of (where, example) pairs in order, every reader's last checks: ids unique, at least
    one question; `where` names a repeated id's place (file, or file:line), `source` an empty file."""
    examples: list[Example] = []
    seen: set[str] = set()
    for where, example in found:
        if example.id in seen:
            raise PeftqaError(f"{where}: question id {example.id} appears twice")
        seen.add(example.id)
        examples.append(example)
    if not examples:
        raise PeftqaError(f"{source}: holds no questions")
    return examples
