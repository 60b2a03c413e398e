"""The questions peftqa trains and scores on: SQuAD v1.1 files found, fetched and read into checked
`Example`s, and the choice of which of them a run uses.

    example.py    Example, what every reader returns
    location.py   the data directory and the split files in it
    squad.py      the SQuAD v1.1 reader and its checks
    reading.py    load_squad: the one place that picks a file's reader; the seeded sample
    questions.py  QuestionChoice (and its description of the scored questions), held-out articles
    fetch.py      fetch_squad / ensure_squad: the official files, MD5-checked
    examples/     the examples shipped with peftqa (load_examples)
"""

from peftqa.data.example import Example
from peftqa.data.examples import load_examples
from peftqa.data.fetch import OFFICIAL_MD5, SPLITS, ensure_squad, fetch_squad
from peftqa.data.location import default_data_dir, find_split_file, md5_of, read_bytes, resolve_data_dir, split_path
from peftqa.data.questions import (
    EVAL_SAMPLES,
    EVAL_SPLITS,
    QuestionChoice,
    eval_file,
    eval_questions,
    gold_answers,
    split_articles,
    train_questions,
)
from peftqa.data.reading import load_squad, reader_for, sample_questions
from peftqa.data.squad import ATTRIBUTION, read_squad

__all__ = [
    "ATTRIBUTION",
    "EVAL_SAMPLES",
    "EVAL_SPLITS",
    "OFFICIAL_MD5",
    "SPLITS",
    "Example",
    "QuestionChoice",
    "default_data_dir",
    "ensure_squad",
    "eval_file",
    "eval_questions",
    "fetch_squad",
    "find_split_file",
    "gold_answers",
    "load_examples",
    "load_squad",
    "md5_of",
    "read_bytes",
    "read_squad",
    "reader_for",
    "resolve_data_dir",
    "sample_questions",
    "split_articles",
    "split_path",
    "train_questions",
]
