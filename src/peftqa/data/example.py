"""`Example`: one question with its context and gold answers, what every reader returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One SQuAD question with its context and every gold answer (text and character start)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    title: str = ""
