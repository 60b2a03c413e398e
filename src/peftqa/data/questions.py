"""Which questions a run trains on and which it is scored on: `QuestionChoice`, the held-out
articles, and the one description of the scored questions (`QuestionChoice.describe`)."""

from __future__ import annotations

import dataclasses
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
    The questions come from the data directory's SQuAD v1.1 files unless `train_file` / `dev_file`
    name other sources (any format `load_squad` reads).
    """

    train_file: str | None = None  # None: train-v1.1.json(.gz) in the data directory
    dev_file: str | None = None  # None: dev-v1.1.json(.gz) in the data directory
    train_limit: int | None = None  # a seeded sample of this many training questions; None: all
    train_seed: int = 42
    eval_split: str = "dev"  # "dev" or "validation"
    eval_limit: int | None = None  # a sample of this many questions of the split; None: all
    eval_sample: str = "random"  # "random": seeded, over every article; "first": file order
    eval_seed: int = 0  # one seed for every run, so every method is scored on the same questions
    validation_questions: int = 2000  # held-out training questions (whole articles) when eval_split is validation
    # Scoring on dev: a sample of this many held-out questions is what the run validates and chooses a null
    # threshold on (`threshold_choice`); None: as many as eval_limit.
    validation_limit: int | None = None
    # Scoring on dev with a null threshold to choose (SQuAD 2.0 data): hold the validation articles out of
    # training too, and choose the threshold on them (`threshold_questions`), never on dev.
    hold_out: bool = False

    def __post_init__(self) -> None:
        if self.eval_split not in EVAL_SPLITS:
            raise PeftqaError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {self.eval_split!r}")
        if self.eval_sample not in EVAL_SAMPLES:
            raise PeftqaError(f"eval_sample must be one of {', '.join(EVAL_SAMPLES)}, got {self.eval_sample!r}")

    def describe(self, count: int) -> str:
        """'500 dev questions (seeded random sample, seed 0)': what a figure was computed on.

        The one description of scored questions: runs write it to run.json, and the report quotes it.
        """
        if self.eval_split == "validation":
            where = "held-out training questions (whole articles)"
        else:
            where = f"dev questions of {Path(self.dev_file).name}" if self.dev_file else "dev questions"
        if self.eval_limit is None or count < self.eval_limit:
            return f"{count} {where} (all)"
        rule = (
            f"seeded random sample, seed {self.eval_seed}"
            if self.eval_sample == "random"
            else "the first in file order"
        )
        return f"{count} {where} ({rule})"

    @property
    def threshold_choice(self) -> QuestionChoice:
        """The questions a null threshold is chosen on: those a validation run of these settings scores."""
        limit = self.validation_limit if self.validation_limit is not None else self.eval_limit
        return dataclasses.replace(self, eval_split="validation", hold_out=False, eval_limit=limit)


def split_articles(examples: list[Example], held_out_questions: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(rest, held_out): whole articles held out until at least `held_out_questions` questions are.

    Held-out questions tune settings (learning rate, rank, null threshold) so that dev is used only to
    report. They are taken by article (`Example.title`), not by question: questions of one article
    share their paragraphs, and a held-out question whose context was trained on would flatter the
    settings. Questions without a title are grouped by their context, so no context is both trained
    and scored. Articles are picked in a seeded random order; both lists keep file order.

    Raises:
        PeftqaError: `held_out_questions` is not positive, or reaching it would leave no article
            to train on.
    """
    if held_out_questions < 1:
        raise PeftqaError(f"held-out questions must be positive, got {held_out_questions}")
    sizes: dict[str, int] = {}
    for example in examples:
        sizes[_article(example)] = sizes.get(_article(example), 0) + 1
    order = list(sizes)
    random.Random(seed).shuffle(order)
    held_out_articles: set[str] = set()
    count = 0
    for article in order:
        if count >= held_out_questions:
            break
        held_out_articles.add(article)
        count += sizes[article]
    if len(held_out_articles) == len(sizes):
        raise PeftqaError(
            f"cannot hold out {held_out_questions} questions as whole articles and keep one to train on: "
            f"the data has {len(examples)} questions in {len(sizes)} article(s) or distinct contexts (seed {seed}); "
            "ask for fewer (--validation-questions) or give more training questions"
        )
    rest = [example for example in examples if _article(example) not in held_out_articles]
    held_out = [example for example in examples if _article(example) in held_out_articles]
    return rest, held_out


def _article(example: Example) -> str:
    """What the held-out split keeps together: the article's title, else the context itself."""
    return example.title if example.title else "\0context:" + example.context


def gold_answers(examples: list[Example]) -> dict[str, list[str]]:
    """question id -> its gold answer texts, the shape `compute_metrics` takes."""
    return {example.id: list(example.answers) for example in examples}


def question_source(data_dir: str | os.PathLike | None, choice: QuestionChoice, split: str) -> str | Path:
    """Where `split` ("train" or "dev") is read from: the file the choice names, else the data directory's."""
    given = choice.train_file if split == "train" else choice.dev_file
    return given if given else split_path(data_dir, split)


def eval_file(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> str | Path:
    """The source a run's scored questions come from: dev, or train for held-out training articles."""
    return question_source(data_dir, choice, "train" if choice.eval_split == "validation" else "dev")


def _held_out_split(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> tuple[list[Example], list[Example]]:
    train = load_squad(question_source(data_dir, choice, "train"), role="train")
    return split_articles(train, choice.validation_questions, choice.eval_seed)


def train_questions(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> list[Example]:
    """The run's training questions: the training file (less the held-out articles when scoring or
    choosing a null threshold on them), sampled with the run's seed when `train_limit` is set."""
    if choice.eval_split == "validation" or choice.hold_out:
        pool, _ = _held_out_split(data_dir, choice)
    else:
        pool = load_squad(question_source(data_dir, choice, "train"), role="train")
    return sample_questions(pool, choice.train_limit, choice.train_seed) if choice.train_limit else pool


def eval_questions(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> tuple[list[Example], str | Path]:
    """The questions a run is scored on, and the source they come from."""
    path = eval_file(data_dir, choice)
    if choice.eval_split == "validation":
        _, pool = _held_out_split(data_dir, choice)
    else:
        pool = load_squad(path, role="dev")
    if choice.eval_limit is None:
        return pool, path
    if choice.eval_sample == "first":
        return pool[: choice.eval_limit], path
    return sample_questions(pool, choice.eval_limit, choice.eval_seed), path


def threshold_questions(data_dir: str | os.PathLike | None, choice: QuestionChoice) -> list[Example]:
    """The held-out training questions a run chooses its null threshold on (never dev): the questions a
    validation run with the same settings is scored on (`QuestionChoice.threshold_choice`)."""
    examples, _ = eval_questions(data_dir, choice.threshold_choice)
    return examples
