"""Which questions a run trains on and which it is scored on: `QuestionChoice`, the held-out
articles, and the one description of the scored questions (`QuestionChoice.describe`)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from peftqa.data.example import Example
from peftqa.data.location import split_path
from peftqa.data.reading import load_squad, sample_questions
from peftqa.errors import PeftqaError

EVAL_SPLITS = ("dev", "validation")
EVAL_SAMPLES = ("random", "first")


@dataclass(frozen=True)
class QuestionChoice:
    """Which questions a run trains on and which it is scored on (RunConfig.questions builds it).

    Scoring is on `dev`, or on `validation`: whole training articles held out from training, which
    sweeps use so that the settings they choose are never chosen on the dev questions later reported.
    """

    train_limit: int | None = None  # a seeded sample of this many training questions; None: all
    train_seed: int = 42
    eval_split: str = "dev"  # "dev" or "validation"
    eval_limit: int | None = None  # a sample of this many questions of the split; None: all
    eval_sample: str = "random"  # "random": seeded, over every article; "first": file order
    eval_seed: int = 0  # one seed for every run, so every method is scored on the same questions
    validation_questions: int = 2000  # held-out training questions (whole articles) when eval_split is validation

    def __post_init__(self) -> None:
        if self.eval_split not in EVAL_SPLITS:
            raise PeftqaError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {self.eval_split!r}")
        if self.eval_sample not in EVAL_SAMPLES:
            raise PeftqaError(f"eval_sample must be one of {', '.join(EVAL_SAMPLES)}, got {self.eval_sample!r}")

    def describe(self, count: int) -> str:
        """'500 dev questions (seeded random sample, seed 0)': what a figure was computed on.

        The one description of scored questions: runs write it to run.json, and the report quotes it.
        """
        where = "held-out training questions (whole articles)" if self.eval_split == "validation" else "dev questions"
        if self.eval_limit is None or count < self.eval_limit:
            return f"{count} {where} (all)"
        rule = (
            f"seeded random sample, seed {self.eval_seed}"
            if self.eval_sample == "random"
            else "the first in file order"
        )
        return f"{count} {where} ({rule})"


def split_articles(examples: list[Example], held_out_questions: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(rest, held_out): whole articles held out until at least `held_out_questions` questions are.

    Held-out questions tune settings (learning rate, rank) so that dev is used only to report. They
    are taken by article (`Example.title`), not by question: questions of one article share their
    paragraphs, and a held-out question whose context was trained on would flatter the settings.
    Articles are picked in a seeded random order; both lists keep file order.

    Raises:
        PeftqaError: `held_out_questions` is not positive, or reaching it would leave no article
            to train on.
    """
    if held_out_questions < 1:
        raise PeftqaError(f"held-out questions must be positive, got {held_out_questions}")
    sizes: dict[str, int] = {}
    for example in examples:
        sizes[example.title] = sizes.get(example.title, 0) + 1
    order = list(sizes)
    random.Random(seed).shuffle(order)
    held_out_titles: set[str] = set()
    count = 0
    for title in order:
        if count >= held_out_questions:
            break
        held_out_titles.add(title)
        count += sizes[title]
    if len(held_out_titles) == len(sizes):
        raise PeftqaError(
            f"cannot hold out {held_out_questions} questions as whole articles and keep one to train on: "
            f"the data has {len(examples)} questions in {len(sizes)} article(s) (seed {seed}); "
            "ask for fewer (--validation-questions)"
        )
    rest = [example for example in examples if example.title not in held_out_titles]
    held_out = [example for example in examples if example.title in held_out_titles]
    return rest, held_out


def gold_answers(examples: list[Example]) -> dict[str, list[str]]:
    """question id -> its gold answer texts, the shape `compute_metrics` takes."""
    return {example.id: list(example.answers) for example in examples}


def eval_file(data_dir: str | os.PathLike | None, eval_split: str) -> Path:
    """The file a run's scored questions come from: dev, or train for held-out training articles."""
    return split_path(data_dir, "train" if eval_split == "validation" else "dev")


def _held_out_split(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> tuple[list[Example], list[Example]]:
    return split_articles(load_squad(split_path(data_dir, "train")), choice.validation_questions, choice.eval_seed)


def train_questions(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> list[Example]:
    """The run's training questions: the training file (less the held-out articles when scoring on
    them), sampled with the run's seed when `train_limit` is set."""
    if choice.eval_split == "validation":
        pool, _ = _held_out_split(data_dir, choice)
    else:
        pool = load_squad(split_path(data_dir, "train"))
    return sample_questions(pool, choice.train_limit, choice.train_seed) if choice.train_limit else pool


def eval_questions(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> tuple[list[Example], Path]:
    """The questions a run is scored on, and the file they come from."""
    path = eval_file(data_dir, choice.eval_split)
    if choice.eval_split == "validation":
        _, pool = _held_out_split(data_dir, choice)
    else:
        pool = load_squad(path)
    if choice.eval_limit is None:
        return pool, path
    if choice.eval_sample == "first":
        return pool[: choice.eval_limit], path
    return sample_questions(pool, choice.eval_limit, choice.eval_seed), path
