"""What the report is made from: finished runs loaded with their per-question scores, and the
groupings of questions (type, answer length) the error analysis averages over."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftqa.data import Example, QuestionChoice, eval_file, fingerprint, load_squad
from peftqa.errors import PeftqaError
from peftqa.inference import run_folder
from peftqa.inference.run_data import located_files, scored_split
from peftqa.inference.run_files import (
    METRICS_FOR_REPORT,
    SETTINGS_OPTIONAL,
    check_fields,
    config_values,
    read_metrics,
    read_predictions,
)
from peftqa.methods.registry import method_label
from peftqa.scoring.stats import BOOTSTRAP_SEED, RESAMPLES, bootstrap_interval, format_interval

QUESTION_TYPES = ("what", "who", "when", "where", "why", "how many", "other")
ANSWER_LENGTHS = (("1 word", 1, 1), ("2-3 words", 2, 3), ("4-6 words", 4, 6), ("7+ words", 7, 10**9))
_WH_WORDS = re.compile(r"\b(how many|how much|who|whom|whose|when|where|why|what|which)\b")
_WH_TYPE = {"how much": "how many", "whom": "who", "whose": "who", "which": "what"}
METRIC_NAMES = {"exact_match": "EM", "f1": "F1"}


@dataclass
class RunResult:
    """A finished run as the report sees it: its files and the dev questions it was scored on."""

    run_dir: Path
    name: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    predictions: dict[str, str]
    examples: list[Example]
    # question id -> {"exact_match", "f1"} (0..100), in the order of `examples`: every EM/F1, interval
    # and comparison in the report is computed from these.
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    _intervals: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def config(self) -> dict[str, Any]:
        return self.settings["config"]

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def head_learning_rate(self) -> float | None:
        """The QA head's rate; a run from before the head had a rate of its own trained it at the method's."""
        return self.settings.get("head_learning_rate", self.settings.get("learning_rate"))

    @property
    def method_label(self) -> str:
        """The method as the report names it: 'peft (LoHa config)' where run.json records the config."""
        return method_label(self.method, self.settings.get("method_details"))

    @property
    def scored_on(self) -> str:
        """Which questions the run was scored on, in the words run.json keeps (QuestionChoice.describe)."""
        return self.settings["eval_description"]

    def values(self, metric: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Per-question `metric` ("exact_match" or "f1") over `ids` (default: every scored question)."""
        ids = list(self.scores) if ids is None else ids
        return np.array([self.scores[i][metric] for i in ids], dtype=np.float64)

    def mean(self, metric: str) -> float:
        return float(self.values(metric).mean()) if self.scores else float("nan")

    def interval(self, metric: str) -> tuple[float, float]:
        """95% bootstrap interval of the mean over this run's questions (computed once)."""
        if metric not in self._intervals:
            self._intervals[metric] = _interval(self.values(metric))
        return self._intervals[metric]

    def formatted(self, metric: str) -> str:
        """'54.8 [52.1, 57.4]'."""
        return format_interval(self.mean(metric), *self.interval(metric))


def _interval(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    return bootstrap_interval(values, resamples=RESAMPLES, seed=BOOTSTRAP_SEED)


def _role(settings: dict[str, Any]) -> str:
    return "train" if settings["config"].get("eval_split") == "validation" else "dev"


def scored_source(folder: Path, settings: dict[str, Any]) -> str | Path:
    """Where the run's scored questions are now (`locate_questions`: the recorded file first): its dev
    (or train) source, checked to be the data it was scored on when run.json keeps its fingerprint."""
    config = {**settings["config"], **located_files(settings["config"], settings)}
    # Only where the questions are read from: the rest of the choice is the run's scores.jsonl.
    files = QuestionChoice(train_file=config["train_file"], dev_file=config["dev_file"])
    path = eval_file(config["data_dir"], dataclasses.replace(files, eval_split=config["eval_split"]))
    recorded = (settings.get("data_files") or {}).get(scored_split(config))
    if recorded and recorded.get("fingerprint") != fingerprint(path, _role(settings)):
        raise PeftqaError(
            f"{folder}: {path} is not the data this run was scored on (its fingerprint was {recorded['fingerprint']})"
        )
    return path


def _run_scores(
    folder: Path, questions: dict[str, Example], path: str | Path
) -> tuple[list[Example], dict[str, dict[str, float]]]:
    """The run's scored questions (in file order) and their per-question scores, from scores.jsonl."""
    stored = run_folder.read_scores(folder)
    if not stored:
        raise PeftqaError(f"{folder}: no scored questions in {run_folder.SCORES_JSONL}")
    missing = [i for i in stored if i not in questions]
    if missing:
        raise PeftqaError(f"{folder}: {len(missing)} scored question(s), e.g. '{missing[0]}', are not in {path}")
    examples = [e for e in questions.values() if e.id in stored]
    scores = {e.id: {m: float(stored[e.id][m]) for m in METRIC_NAMES} for e in examples}
    return examples, scores


def load_results(run_dirs: Sequence[str | Path]) -> list[RunResult]:
    """Every run's settings, metrics, predictions, scored questions and per-question scores.

    Each question file is read once, whole: runs may score a seeded random sample rather than the
    first N questions, so the scored ids (scores.jsonl) pick the questions.
    """
    if not run_dirs:
        raise PeftqaError("name at least one run directory")
    files: dict[str, dict[str, Example]] = {}
    results = []
    for run_dir in run_dirs:
        # The report reads the recorded settings, not a model: a run whose config newer checks would
        # refuse is still reported (config_values checks its types only).
        folder, settings = run_folder.check_run_dir(run_dir, config_checked=False)
        check_fields(
            settings, folder / run_folder.RUN_JSON, {"eval_description": SETTINGS_OPTIONAL["eval_description"]}
        )
        # The config as the run used it: every setting, defaults filled in where an older run.json lacks one.
        settings = {**settings, "config": config_values(settings["config"], folder / run_folder.RUN_JSON)}
        metrics = read_metrics(folder / run_folder.METRICS_JSON, METRICS_FOR_REPORT)
        predictions = read_predictions(folder / run_folder.PREDICTIONS_JSON)
        path = scored_source(folder, settings)
        if str(path) not in files:
            files[str(path)] = {e.id: e for e in load_squad(path, role=_role(settings))}
        examples, scores = _run_scores(folder, files[str(path)], path)
        results.append(RunResult(folder, folder.name, settings, metrics, predictions, examples, scores))
    for result, name in zip(results, run_folder.display_names([r.run_dir for r in results]), strict=True):
        result.name = name
    return results


def question_type(question: str) -> str:
    """what/who/when/where/why/how many/other, from the first question word in the question."""
    match = _WH_WORDS.search(question.lower())
    if not match:
        return "other"
    word = match.group(1)
    return _WH_TYPE.get(word, word)


NO_ANSWER = "no answer"  # the answer-length group of a question without one (SQuAD 2.0)


def answer_length(example: Example) -> str:
    if not example.answers:
        return NO_ANSWER
    words = len(example.answers[0].split())
    return next((label for label, low, high in ANSWER_LENGTHS if low <= words <= high), ANSWER_LENGTHS[0][0])


def per_question_scores(result: RunResult) -> dict[str, dict[str, float]]:
    """{question id: {"exact_match", "f1"}} of a run, from its scores.jsonl."""
    return result.scores


def shared_ids(a: RunResult, b: RunResult) -> list[str]:
    """The questions both runs were scored on, in a's order: every paired number and every
    right/wrong example of a pair of runs uses exactly these."""
    return [i for i in a.scores if i in b.scores]


def f1_by_group(
    results: list[RunResult], scores: list[dict], group: Callable[[Example], str], order: Sequence[str]
) -> list[list[Any]]:
    """Rows: group, number of questions, then each run's mean F1 over the group's questions.

    Only questions every run was scored on count, so each column averages the same questions.
    """
    common = set.intersection(*(set(s) for s in scores))
    examples = [e for e in _all_examples(results).values() if e.id in common]
    rows = []
    for label in order:
        ids = [e.id for e in examples if group(e) == label]
        if not ids:
            continue
        means = [sum(s[i]["f1"] for i in ids) / len(ids) for s in scores]
        rows.append([label, len(ids), *[f"{m:.1f}" for m in means]])
    return rows


def _all_examples(results: Sequence[RunResult]) -> dict[str, Example]:
    """Every scored question of every run by id (runs may have been scored on different samples)."""
    return {e.id: e for r in results for e in r.examples}


def pareto_front(points: list[tuple[str, int, float]]) -> list[str]:
    """Labels of the runs no other run beats with fewer (or as many) parameters, fewest first."""
    front, best = [], float("-inf")
    for label, _, f1 in sorted(points, key=lambda p: (p[1], -p[2])):
        if f1 > best:
            front.append(label)
            best = f1
    return front
