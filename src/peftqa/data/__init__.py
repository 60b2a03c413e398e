"""The questions peftqa trains and scores on: SQuAD files found, fetched and read into checked
`Example`s (or the user's own files in SQuAD JSON or JSON Lines), and the choice of which of them a
run uses.

    example.py    Example, what every reader returns (no answers: a question without one, SQuAD 2.0)
    location.py   the data directory and the split files in it
    squad.py      the SQuAD JSON reader (v1.1 and v2.0) and its checks
    jsonl.py      the JSON Lines reader (the `datasets` SQuAD layout) and its checks
    hub.py        `datasets` folders and Hub names (optional package)
    reading.py    load_squad: the one place that picks a source's reader; the seeded sample
    source.py     which data a run used: format and fingerprint (MD5 if official, else SHA-256)
    questions.py  QuestionChoice (and its description of the scored questions), held-out articles
    fetch.py      fetch_squad / ensure_squad: the official files, MD5-checked
    make_v2.py    a SQuAD 2.0-format file made from a v1.1 file (`peftqa data make-v2`)
    examples/     the examples shipped with peftqa (load_examples)
"""

from peftqa.data.example import Example
from peftqa.data.examples import load_examples
from peftqa.data.fetch import OFFICIAL_MD5, SPLITS, ensure_squad, fetch_squad
from peftqa.data.location import (
    default_data_dir,
    find_split_file,
    md5_of,
    read_bytes,
    resolve_data_dir,
    sha256_of,
    split_path,
)
from peftqa.data.make_v2 import make_squad2
from peftqa.data.questions import (
    EVAL_SAMPLES,
    EVAL_SPLITS,
    QuestionChoice,
    eval_file,
    eval_questions,
    gold_answers,
    question_source,
    split_articles,
    threshold_questions,
    train_questions,
)
from peftqa.data.reading import detect_format, load_squad, reader_for, sample_questions
from peftqa.data.source import describe_source, fingerprint, has_unanswerable, is_official
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
    "describe_source",
    "detect_format",
    "ensure_squad",
    "eval_file",
    "eval_questions",
    "fetch_squad",
    "find_split_file",
    "fingerprint",
    "gold_answers",
    "has_unanswerable",
    "is_official",
    "load_examples",
    "load_squad",
    "make_squad2",
    "md5_of",
    "question_source",
    "read_bytes",
    "read_squad",
    "reader_for",
    "resolve_data_dir",
    "sample_questions",
    "sha256_of",
    "split_articles",
    "split_path",
    "threshold_questions",
    "train_questions",
]
