"""Results -> a report a person reads: `peftqa report RUN_DIR... [--sweep DIR...] --out DIR`.

The report is built once as a list of blocks (headings, text, tables, figures) and rendered twice:
`report.md` (figures as PNG files beside it) and a self-contained `report.html` (figures inline as
base64, no external files), so the two never say different things.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from peftqa import runs
from peftqa.data import Example, load_squad, split_path
from peftqa.errors import PeftqaError
from peftqa.metrics import normalize_answer, score_answer
from peftqa.stats import bootstrap_interval, format_interval, paired_difference

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
QUESTION_TYPES = ("what", "who", "when", "where", "why", "how many", "other")
ANSWER_LENGTHS = (("1 word", 1, 1), ("2-3 words", 2, 3), ("4-6 words", 4, 6), ("7+ words", 7, 10**9))
_WH_WORDS = re.compile(r"\b(how many|how much|who|whom|whose|when|where|why|what|which)\b")
_WH_TYPE = {"how much": "how many", "whom": "who", "whose": "who", "which": "what"}
_DISAGREEMENT_EXAMPLES = 3  # per pair of runs and direction
# Every interval in the report: 2,000 percentile-bootstrap resamples over questions, one fixed seed,
# so building the report twice prints the same numbers.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
METRIC_NAMES = {"exact_match": "EM", "f1": "F1"}
NOT_SETTLED = "not settled (interval includes 0)"
# SQuAD v1.1 train has 87,599 questions; runs on far fewer (or on a CPU) are small-budget runs.
_FULL_TRAIN_QUESTIONS = 87_599
# run.json config fields that do not change what a run learns: runs differing only in these (and the
# seed) are seeds of one setting.
_NOT_A_SETTING = {"seed", "output_dir", "data_dir", "checkpoint_every_steps", "eval_batch_size", "lr"}


def _human_bytes(count: float) -> str:
    """1536 -> '1.5 KB'; gigabytes are the largest unit."""
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


RESULT_HEADERS = [
    "method",
    "model",
    "EM",
    "F1",
    "trainable params",
    "%",
    "adapter size",
    "train s",
    "features/s",
    "peak memory",
]


def result_row(m: dict) -> list[str]:
    """One run's metrics.json as table cells (peak memory: `peak_memory_mb`, peak RSS on CPU, GPU memory on CUDA)."""
    peak = m.get("peak_memory_mb", 0) * 2**20
    return [
        m["method"],
        m["model"],
        f"{m['exact_match']:.2f}",
        f"{m['f1']:.2f}",
        f"{m['trainable_params']:,}",
        f"{m['trainable_percent']:.2f}",
        _human_bytes(m.get("artifact_bytes", 0)),
        f"{m['train_seconds']:.0f}",
        f"{m['train_features_per_second']:.1f}",
        _human_bytes(peak) if peak else "n/a",
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    escape = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(metrics: Sequence[dict]) -> str:
    """A markdown table: one row per run's metrics.json."""
    return markdown_table(RESULT_HEADERS, [result_row(m) for m in metrics])


# ---------------------------------------------------------------- the report's building blocks


@dataclass
class Block:
    kind: str  # "h2", "h3", "p", "table", "figure"
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    png: bytes = b""
    name: str = ""  # figure file name


def render_markdown(blocks: list[Block], figures_dir: Path) -> str:
    parts = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            parts.append("#" * int(block.kind[1]) + " " + block.text)
        elif block.kind == "p":
            parts.append(block.text)
        elif block.kind == "table":
            parts.append(markdown_table(block.headers, block.rows))
        elif block.kind == "figure":
            runs.write_bytes_atomic(figures_dir / block.name, block.png)
            parts.append(f"![{block.text}]({figures_dir.name}/{block.name})")
    return "\n\n".join(parts) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555}"
)


def render_html(blocks: list[Block], title: str) -> str:
    """One file: figures inline as base64 PNG, so the report can be mailed or opened anywhere."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style>"]
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            parts.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "p":
            text = html.escape(block.text)
            text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
            text = re.sub(r"[*][*]([^*]+)[*][*]", r"<b>\1</b>", text)
            parts.append(f"<p>{text}</p>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in block.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif block.kind == "figure":
            data = base64.b64encode(block.png).decode()
            caption = html.escape(block.text)
            parts.append(
                f"<figure><img alt='{caption}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- what the report is made from


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
    scores_source: str = runs.SCORES_JSONL  # or PREDICTIONS_JSON, for runs written before scores.jsonl
    _intervals: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def config(self) -> dict[str, Any]:
        return self.settings["config"]

    @property
    def method(self) -> str:
        return self.config["method"]

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


def _question_file(config: dict[str, Any]) -> Path:
    """The SQuAD file a run's scored questions come from: dev, or train for held-out training articles."""
    split = config.get("eval_split") or "dev"
    return split_path(config.get("data_dir"), "train" if split == "validation" else "dev")


def _run_scores(
    folder: Path, predictions: dict[str, str], questions: dict[str, Example], path: Path
) -> tuple[list[Example], dict[str, dict[str, float]], str]:
    """The run's scored questions and per-question scores: from scores.jsonl when the run wrote one, else
    recomputed from predictions.json and the gold answers (the same official scoring training used)."""
    stored = runs.read_scores(folder)
    wanted = stored or predictions
    missing = [i for i in wanted if i not in questions]
    if missing:
        raise PeftqaError(f"{folder}: {len(missing)} scored question(s), e.g. '{missing[0]}', are not in {path}")
    examples = [e for e in questions.values() if e.id in wanted]  # file order
    if stored:
        for e in examples:  # predictions.json may predate a re-scoring; scores.jsonl says what was scored
            predictions.setdefault(e.id, str(stored[e.id].get("prediction", "")))
        scores = {e.id: {m: float(stored[e.id][m]) for m in METRIC_NAMES} for e in examples}
        return examples, scores, runs.SCORES_JSONL
    scores = {e.id: score_answer(predictions.get(e.id, ""), e.answers) for e in examples}
    return examples, scores, runs.PREDICTIONS_JSON


def load_results(run_dirs: Sequence[str | Path]) -> list[RunResult]:
    """Every run's settings, metrics, predictions, scored questions and per-question scores.

    Each question file is read once, whole: runs may score a seeded random sample rather than the
    first N questions, so the scored ids (scores.jsonl, else predictions.json) pick the questions.
    """
    if not run_dirs:
        raise PeftqaError("name at least one run directory")
    files: dict[Path, dict[str, Example]] = {}
    results = []
    for run_dir in run_dirs:
        folder, settings = runs.check_run_dir(run_dir)
        metrics = runs.read_json(folder / runs.METRICS_JSON)
        predictions = runs.read_json(folder / runs.PREDICTIONS_JSON)
        path = _question_file(settings["config"])
        if path not in files:
            files[path] = {e.id: e for e in load_squad(path)}
        examples, scores, source = _run_scores(folder, predictions, files[path], path)
        results.append(RunResult(folder, folder.name, settings, metrics, predictions, examples, scores, source))
    for result, name in zip(results, runs.display_names([r.run_dir for r in results]), strict=True):
        result.name = name
    return results


def question_type(question: str) -> str:
    """what/who/when/where/why/how many/other, from the first question word in the question."""
    match = _WH_WORDS.search(question.lower())
    if not match:
        return "other"
    word = match.group(1)
    return _WH_TYPE.get(word, word)


def answer_length(example: Example) -> str:
    words = len(example.answers[0].split()) if example.answers else 0
    return next((label for label, low, high in ANSWER_LENGTHS if low <= words <= high), ANSWER_LENGTHS[0][0])


def per_question_scores(result: RunResult) -> dict[str, dict[str, float]]:
    """{question id: {"exact_match", "f1"}} of a run (from scores.jsonl, or recomputed for older runs)."""
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


# ---------------------------------------------------------------- which questions, seeds, comparisons


def question_sample(config: dict[str, Any], count: int) -> str:
    """'500 SQuAD v1.1 dev questions, a seeded random sample (seed 0)': which questions a run's figures use.

    Read from run.json's config: `eval_split`, `eval_limit`, `eval_sample`, `eval_seed`. Runs written
    before `eval_sample` existed scored the first N questions in file order.
    """
    if (config.get("eval_split") or "dev") == "validation":
        where = "held-out training questions (whole articles kept out of training)"
    else:
        where = "SQuAD v1.1 dev questions"
    limit = config.get("eval_limit")
    if limit is None or count < limit:
        return f"all {count:,} {where}"
    if config.get("eval_sample") == "random":
        seed = config.get("eval_seed")
        return f"{count:,} {where}, a seeded random sample (seed {'not recorded' if seed is None else seed})"
    return f"the first {count:,} {where} in file order"


@dataclass
class MethodGroup:
    """Runs of one method with the same settings apart from the seed (one run when trained once)."""

    label: str
    method: str
    runs: list[RunResult]

    @property
    def ids(self) -> list[str]:
        """Questions every run of the group was scored on."""
        first, *others = self.runs
        return [i for i in first.scores if all(i in r.scores for r in others)]

    def values(self, metric: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Per question, `metric` averaged over the group's runs (its seeds)."""
        ids = self.ids if ids is None else ids
        return np.mean([r.values(metric, ids) for r in self.runs], axis=0) if ids else np.array([])

    def mean(self, metric: str) -> float:
        return float(np.mean([r.mean(metric) for r in self.runs]))

    def std(self, metric: str) -> float:
        """Standard deviation over seeds (n - 1); nan for a single run."""
        return float(np.std([r.mean(metric) for r in self.runs], ddof=1)) if len(self.runs) > 1 else float("nan")

    def formatted(self, metric: str) -> str:
        """The mean with the bootstrap interval of the per-question means over the group's seeds."""
        values = self.values(metric)
        return format_interval(float(values.mean()) if values.size else float("nan"), *_interval(values))

    @property
    def first(self) -> RunResult:
        return self.runs[0]


def _setting(result: RunResult) -> dict[str, Any]:
    """What decides what a run learns: its config less the seed and bookkeeping, with the resolved lr."""
    config = {k: v for k, v in result.config.items() if k not in _NOT_A_SETTING}
    return {**config, "learning_rate": result.settings.get("learning_rate")}


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(results: Sequence[RunResult]) -> list[MethodGroup]:
    """Runs grouped by method and settings, seeds together. A group is labelled by its method, and where
    one method was run with several settings, by the settings that differ too: 'lora (learning_rate=0.01)'."""
    keyed: dict[str, list[RunResult]] = {}
    for result in results:
        keyed.setdefault(json.dumps(_setting(result), sort_keys=True, default=str), []).append(result)
    groups = []
    for members in keyed.values():
        mine = _setting(members[0])
        rivals = [_setting(m[0]) for m in keyed.values() if m[0].method == members[0].method and m is not members]
        differ = [k for k in mine if any(r.get(k) != mine[k] for r in rivals)]
        label = members[0].method
        if differ:
            label += " (" + ", ".join(f"{k}={_short(mine[k])}" for k in differ[:2]) + ")"
        groups.append(MethodGroup(label, members[0].method, members))
    return groups


def compare(a: RunResult | MethodGroup, b: RunResult | MethodGroup, metric: str) -> dict[str, Any]:
    """Paired bootstrap of a - b on the questions both were scored on: paired_difference's dict plus
    "questions" (how many were shared); with no shared question, difference and bounds are nan."""
    theirs = set(_ids_of(b))
    ids = [i for i in _ids_of(a) if i in theirs]
    if not ids:
        nan = float("nan")
        return {"difference": nan, "low": nan, "high": nan, "settled": False, "questions": 0}
    result = paired_difference(a.values(metric, ids), b.values(metric, ids), resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
    return {**result, "questions": len(ids)}


def _ids_of(item: RunResult | MethodGroup) -> list[str]:
    return item.ids if isinstance(item, MethodGroup) else list(item.scores)


def verdict(comparison: dict[str, Any]) -> str:
    if not comparison["questions"]:
        return "no shared questions"
    return "settled" if comparison["settled"] else NOT_SETTLED


def _difference(comparison: dict[str, Any]) -> str:
    """'+3.1 [1.0, 5.2]': a signed difference in points with its interval."""
    text = format_interval(comparison["difference"], comparison["low"], comparison["high"])
    return text if text == "n/a" or text.startswith("-") else "+" + text


def reference_run(results: Sequence[RunResult]) -> tuple[RunResult, str]:
    """What every run is compared with: full fine-tuning (its best run by F1) when present, else the best run."""
    full = [r for r in results if r.method == "full"]
    if full:
        return max(full, key=lambda r: r.mean("f1")), "full fine-tuning"
    return max(results, key=lambda r: r.mean("f1")), "the best run by F1"


# ---------------------------------------------------------------- findings, written from the numbers


def _edge_of(summary: dict[str, Any]) -> str:
    """Where the sweep's best learning rate sits on its grid, in words."""
    best = summary.get("best") or {}
    lr = best.get("params", {}).get("lr")
    grid = sorted(summary.get("search_space", {}).get("lr") or {t["params"]["lr"] for t in summary.get("trials", [])})
    lr_warnings = [w for w in summary.get("edge_warnings", []) if "lr=" in w]
    if lr_warnings or (len(grid) > 1 and lr in (grid[0], grid[-1])):
        side = "lowest" if grid and lr == grid[0] else "highest"
        return f"the {side} value of its grid ({', '.join(f'{x:g}' for x in grid)}): the best rate may lie outside it"
    return f"inside its grid ({', '.join(f'{x:g}' for x in grid)})"


def sweep_questions(summary: dict[str, Any]) -> str:
    """Which questions a sweep's trials were scored on, from sweep.json's `eval_split` and `eval_limit`."""
    count = f"{summary['eval_limit']:,}" if summary.get("eval_limit") else "all"
    split = summary.get("eval_split")
    if split == "validation":
        return f"{count} held-out training questions (whole articles kept out of the trials' training), not dev"
    if split == "dev":
        return f"{count} dev questions, the split this report scores: the choice may flatter the dev results"
    return f"{count} questions of a split sweep.json does not name (sweeps written before `eval_split` scored dev)"


def _sweep_finding(summary: dict[str, Any], groups: Sequence[MethodGroup]) -> str:
    best = summary.get("best")
    if not best:
        return f"The {summary['method']} sweep finished no trial."
    lr = best["params"]["lr"]
    others = ", ".join(f"{k}={v:g}" for k, v in best["params"].items() if k != "lr")
    text = (
        f"The {summary['method']} sweep chose learning rate {lr:g}{f' ({others})' if others else ''}, "
        f"{_edge_of(summary)}; its trials were scored on {sweep_questions(summary)}."
    )
    rates = {g.first.settings.get("learning_rate") for g in groups if g.method == summary["method"]}
    used = sorted(float(rate) for rate in rates if rate is not None)
    if used and lr not in used:
        text += f" The {summary['method']} run(s) here used {', '.join(f'{x:g}' for x in used)} instead."
    return text


def _thousands(value: float) -> str:
    return f"{value:,.0f}"


def _per_point(amount: float, f1: float, unit: Callable[[float], str]) -> str:
    return unit(amount / f1) if f1 > 0 else "n/a (F1 is 0)"


def findings(results: Sequence[RunResult], sweeps: Sequence[dict[str, Any]] = ()) -> list[str]:
    """The report's Findings, one paragraph per subject, written from the loaded numbers (never by hand).

    Args:
        results: the loaded runs (`load_results`).
        sweeps: sweep summaries (`read_sweep`), for what the sweeps chose and on which questions.
    """
    groups = sorted(group_runs(results), key=lambda g: g.mean("f1"), reverse=True)
    paragraphs = []
    seeds = lambda g: f", mean of {len(g.runs)} seeds" if len(g.runs) > 1 else ""  # noqa: E731

    best = groups[0]
    if len(groups) == 1:
        paragraphs.append(
            f"Only one method was run: **{best.label}**, F1 {best.formatted('f1')}, EM {best.formatted('exact_match')}"
            f"{seeds(best)}."
        )
    else:
        second = groups[1]
        lead = compare(best, second, "f1")
        judged = (
            "the lead is settled (the interval excludes 0)"
            if lead["settled"]
            else "the lead is not settled (the interval includes 0): these questions cannot tell the two apart"
        )
        paragraphs.append(
            f"**{best.label}** has the highest F1, {best.formatted('f1')} (EM {best.formatted('exact_match')}"
            f"{seeds(best)}). Its lead over {second.label} (F1 {second.formatted('f1')}) is {_difference(lead)} "
            f"F1 points on the {lead['questions']:,} questions both were scored on; {judged}."
        )

    full = next((g for g in groups if g.method == "full"), None)
    if full is None:
        paragraphs.append("No full fine-tuning run is among these runs, so no method's gap to it is given.")
    elif len(groups) > 1:
        gaps = []
        for group in groups:
            if group is full:
                continue
            gap = compare(group, full, "f1")
            settled = "settled" if gap["settled"] else "not settled"
            gaps.append(f"{group.label} {_difference(gap)} ({settled}, {gap['questions']:,} questions)")
        paragraphs.append(
            f"Gap to full fine-tuning (F1 {full.formatted('f1')}), in F1 points with 95% paired intervals: "
            + "; ".join(gaps)
            + "."
        )

    costs = []
    for group in groups:
        m, f1 = group.first.metrics, group.mean("f1")
        params, size = m.get("trainable_params", 0), m.get("artifact_bytes", 0)
        text = (
            f"{group.label} trains {params:,} parameters and saves {_human_bytes(size)}: "
            f"{_per_point(params, f1, _thousands)} parameters and "
            f"{_per_point(size, f1, _human_bytes)} per F1 point"
        )
        if full is not None and group is not full and full.mean("f1") > 0:
            full_m = full.first.metrics
            text += (
                f" ({100 * f1 / full.mean('f1'):.0f}% of full fine-tuning's F1 with "
                f"{100 * params / max(full_m.get('trainable_params', 0), 1):.2g}% of its trainable parameters and "
                f"{100 * size / max(full_m.get('artifact_bytes', 0), 1):.2g}% of its size on disk)"
            )
        costs.append(text)
    paragraphs.append("Cost: " + "; ".join(costs) + ".")

    paragraphs += [_sweep_finding(summary, groups) for summary in sweeps]

    samples = dict.fromkeys(question_sample(r.config, len(r.scores)) for r in results)
    widths = [(r.interval("f1")[1] - r.interval("f1")[0]) / 2 for r in results if r.scores]
    caveats = [
        f"Scored on {'; '.join(samples)}"
        + (f": at this size an F1 interval is about ±{max(widths):.1f} points." if widths else ".")
    ]
    if all(len(g.runs) == 1 for g in groups):
        used = sorted({r.config.get("seed") for r in results}, key=str)
        caveats.append(
            f"Each method was trained once (seed {', '.join(map(str, used))}): the intervals cover which questions "
            "were asked, not the luck of training, which can move a method by more than its interval."
        )
    else:
        caveats.append(
            "Seeds: "
            + ", ".join(
                f"{g.label} {len(g.runs)}" + (f" (F1 std {g.std('f1'):.1f})" if len(g.runs) > 1 else "") for g in groups
            )
            + "."
        )
    devices = dict.fromkeys(str(r.settings.get("device", "unrecorded")) for r in results)
    caveats.append(f"Trained on {'; '.join(devices)}.")
    questions = sorted({r.settings.get("train_questions") or 0 for r in results})
    epochs = sorted({float(r.config.get("epochs", 0)) for r in results})
    on_cpu = any(d.startswith("cpu") for d in devices)
    if on_cpu or questions[0] < _FULL_TRAIN_QUESTIONS:
        caveats.append(
            f"These are small runs ({'/'.join(f'{q:,}' for q in questions)} training questions, "
            f"{'/'.join(f'{e:g}' for e in epochs)} epoch(s){', on a CPU' if on_cpu else ''}): far from full-data "
            "results, where every method scores much higher and the gaps between methods may differ; read them as "
            "a comparison under one small budget."
        )
    paragraphs.append("Caveats: " + " ".join(caveats))
    return paragraphs


# ---------------------------------------------------------------- the sections


def _results_section(results: list[RunResult]) -> list[Block]:
    headers = [f"{h} [95% CI]" if h in METRIC_NAMES.values() else h for h in RESULT_HEADERS]
    em, f1 = RESULT_HEADERS.index("EM"), RESULT_HEADERS.index("F1")
    rows = []
    for r in results:
        cells = result_row(r.metrics)
        cells[em], cells[f1] = r.formatted("exact_match"), r.formatted("f1")
        rows.append([r.name, *cells])
    note = (
        f"{_questions_note(results)} EM and F1 are means over those questions with 95% percentile-bootstrap "
        f"intervals ({RESAMPLES:,} resamples of the questions, seed {BOOTSTRAP_SEED}): they cover which questions "
        "were asked, not the luck of training. Adapter size is the saved artifact on disk (adapter + QA head, or "
        "the whole model); features/s is training throughput."
    )
    older = [r.name for r in results if r.scores_source != runs.SCORES_JSONL]
    if older:
        note += (
            f" Per-question scores of {', '.join(older)} are recomputed from {runs.PREDICTIONS_JSON} "
            f"(written before runs kept {runs.SCORES_JSONL})."
        )
    for r in results:
        for metric, label in METRIC_NAMES.items():
            recorded = r.metrics.get(metric)
            # The table is computed from per-question scores; metrics.json must say the same.
            if recorded is not None and abs(recorded - r.mean(metric)) > 0.01:
                note += (
                    f" Warning: {r.name}'s metrics.json says {label} {recorded:.2f}, "
                    f"its questions average {r.mean(metric):.2f}."
                )
    settings = [
        [
            r.name,
            f"{r.settings.get('learning_rate', 0):g}",
            r.settings.get("train_questions"),
            f"{r.settings['config']['epochs']:g}",
            r.settings["config"]["max_length"],
            r.settings["config"]["batch_size"],
            r.settings.get("device", "?"),
        ]
        for r in results
    ]
    return [
        Block("h2", "Results"),
        Block("p", note),
        Block("table", headers=["run", *headers], rows=rows),
        Block(
            "table", headers=["run", "lr", "train questions", "epochs", "max length", "batch", "device"], rows=settings
        ),
    ]


def _questions_note(results: Sequence[RunResult]) -> str:
    """Which questions each run's figures use: one sentence when all runs share the rule, else one per run."""
    described = {r.name: question_sample(r.config, len(r.scores)) for r in results}
    if len(set(described.values())) == 1:
        return f"Every run is scored on {next(iter(described.values()))}."
    return (
        "Runs are scored on different questions: "
        + "; ".join(f"{name}: {text}" for name, text in described.items())
        + ". Comparisons between two runs use only the questions both were scored on."
    )


def _findings_section(results: list[RunResult], sweeps: Sequence[dict[str, Any]]) -> list[Block]:
    return [
        Block("h2", "Findings"),
        *[Block("p", paragraph) for paragraph in findings(results, sweeps)],
    ]


def _comparison_section(results: list[RunResult]) -> list[Block]:
    """Every run against full fine-tuning (else the best run): paired differences with their intervals."""
    if len(results) < 2:
        return []
    reference, why = reference_run(results)
    rows = []
    for r in results:
        if r is reference:
            continue
        f1, em = compare(r, reference, "f1"), compare(r, reference, "exact_match")
        rows.append([r.name, f1["questions"], _difference(f1), verdict(f1), _difference(em), verdict(em)])
    note = (
        f"Each run minus {reference.name} ({why}), on the questions both were scored on, in points, with 95% "
        f"paired-bootstrap intervals ({RESAMPLES:,} resamples of the shared questions, seed {BOOTSTRAP_SEED}). "
        "Settled: the interval excludes 0, so which of the two is better is not the luck of the questions."
    )
    headers = ["run", "shared questions", f"F1 - {reference.name}", "F1", f"EM - {reference.name}", "EM"]
    return [Block("h2", "Paired comparisons"), Block("p", note), Block("table", headers=headers, rows=rows)]


def _seeds_section(results: list[RunResult]) -> list[Block]:
    """Mean ± std over seeds beside each run's bootstrap interval; only when some setting has several seeds."""
    groups = group_runs(results)
    if all(len(g.runs) < 2 for g in groups):
        return []
    mean_std = lambda g, m: (  # noqa: E731
        f"{g.mean(m):.1f} ± {g.std(m):.1f}" if len(g.runs) > 1 else f"{g.mean(m):.1f} (one seed)"
    )
    rows = [
        [
            g.label,
            ", ".join(str(r.config.get("seed")) for r in g.runs),
            mean_std(g, "exact_match"),
            mean_std(g, "f1"),
            "; ".join(f"{r.name}: {r.formatted('f1')}" for r in g.runs),
        ]
        for g in groups
    ]
    note = (
        "Runs of one method with the same settings apart from the seed. Mean ± standard deviation over the seeds "
        "(training luck), beside each run's bootstrap interval over questions (the luck of the questions)."
    )
    headers = ["method", "seeds", "EM mean ± std", "F1 mean ± std", "each run's F1 [95% CI]"]
    return [Block("h2", "Seeds"), Block("p", note), Block("table", headers=headers, rows=rows)]


def _curves_section(results: list[RunResult]) -> list[Block]:
    from peftqa.report_plots import pareto_png

    blocks = [Block("h2", "Training curves")]
    for r in results:
        curve = r.run_dir / runs.LOSS_CURVE
        if curve.is_file():
            blocks.append(
                Block(
                    "figure",
                    f"{r.name}: train and dev loss",
                    png=curve.read_bytes(),
                    name="loss-" + re.sub(r"[^\w.-]", "_", r.name) + ".png",
                )
            )
        history = [
            [h["epoch"], h["step"], f"{h['train_loss']:.3f}", f"{h['dev_loss']:.3f}", f"{h['f1']:.2f}"]
            for h in r.metrics.get("history", [])
        ]
        blocks.append(Block("table", headers=["epoch", "step", "train loss", "dev loss", "dev F1"], rows=history))
    points = [(r.name, r.metrics["trainable_params"], r.metrics["f1"]) for r in results]
    front = pareto_front(points)
    blocks += [
        Block("h2", "F1 against trainable parameters"),
        Block(
            "figure",
            "dev F1 against trainable parameters (log scale), Pareto front dashed",
            png=pareto_png(points, front),
            name="pareto.png",
        ),
        Block("p", f"Pareto front (no run is better with as few parameters): {', '.join(front)}."),
    ]
    return blocks


def _sweep_section(summaries: Sequence[dict[str, Any]]) -> list[Block]:
    from peftqa.report_plots import sweeps_png

    if not summaries:
        return []
    blocks = [
        Block("h2", "Learning-rate sweeps"),
        Block(
            "p",
            "Each trial trains on a seeded random sample of the training questions and is scored on the questions "
            "named under each sweep; the best is the highest F1 (EM breaks ties), circled.",
        ),
        Block("figure", "dev F1 against learning rate per sweep", png=sweeps_png(summaries), name="sweeps.png"),
    ]
    for summary in summaries:
        rows = [
            [
                t["number"],
                ", ".join(f"{k}={v:g}" for k, v in t["params"].items()),
                t["state"],
                "" if t["f1"] is None else f"{t['f1']:.2f}",
                "" if t["exact_match"] is None else f"{t['exact_match']:.2f}",
                "" if t.get("dev_loss") is None else f"{t['dev_loss']:.3f}",
            ]
            for t in summary["trials"]
        ]
        best = summary.get("best")
        verdict = f"best {best['params']} (F1 {best['f1']:.2f})" if best else "no complete trial"
        by_loss = summary.get("best_by_dev_loss")
        if by_loss and best and by_loss["params"] != best["params"]:
            verdict += f"; the lowest dev loss would have chosen {by_loss['params']} (F1 {by_loss['f1']:.2f})"
        warnings = " ".join(f"Warning: {w}." for w in summary.get("edge_warnings", []))
        blocks += [
            Block(
                "h3", f"{summary['method']} ({summary['train_questions']} questions, {summary['epochs']:g} epoch(s))"
            ),
            Block("p", f"{verdict}. Scored on {sweep_questions(summary)}. {warnings}".strip()),
            Block("table", headers=["trial", "params", "state", "F1", "EM", "dev loss"], rows=rows),
        ]
    return blocks


def _distinct_questions(ids: Sequence[str], by_id: dict[str, Example]) -> list[str]:
    """`ids` without repeats of a question text (SQuAD dev asks some questions twice, under two ids)."""
    first_id_of: dict[str, str] = {}
    for i in ids:
        first_id_of.setdefault(by_id[i].question, i)
    return list(first_id_of.values())


def _error_section(results: list[RunResult]) -> list[Block]:
    scores = [per_question_scores(r) for r in results]
    names = [r.name for r in results]
    blocks = [
        Block("h2", "Error analysis"),
        Block("h3", "F1 by question type"),
        Block(
            "table",
            headers=["type", "questions", *names],
            rows=f1_by_group(results, scores, lambda e: question_type(e.question), QUESTION_TYPES),
        ),
        Block("h3", "F1 by answer length (first gold answer)"),
        Block(
            "table",
            headers=["length", "questions", *names],
            rows=f1_by_group(results, scores, answer_length, [label for label, _, _ in ANSWER_LENGTHS]),
        ),
    ]
    if len(results) < 2:
        return blocks
    blocks += [
        Block("h3", "Agreement between runs"),
        Block("p", "Same answer: identical after SQuAD normalisation. Right: exact match with a gold answer."),
    ]
    rows, examples = [], []
    by_id = _all_examples(results)
    for (a, sa), (b, sb) in itertools.combinations(zip(results, scores, strict=True), 2):
        ids = shared_ids(a, b)
        same = sum(
            normalize_answer(a.predictions.get(i, "")) == normalize_answer(b.predictions.get(i, "")) for i in ids
        )
        right = [(sa[i]["exact_match"] == 100, sb[i]["exact_match"] == 100) for i in ids]
        n = max(len(ids), 1)
        rows.append(
            [
                a.name,
                b.name,
                len(ids),
                f"{100 * same / n:.1f}%",
                *[f"{100 * right.count(case) / n:.1f}%" for case in ((True, True), (True, False), (False, True))],
            ]
        )
        for (x, sx), (y, sy) in (((a, sa), (b, sb)), ((b, sb), (a, sa))):
            wins = [i for i in ids if sx[i]["exact_match"] == 100 and sy[i]["f1"] < 50]
            chosen = _distinct_questions(wins, by_id)[:_DISAGREEMENT_EXAMPLES]
            examples += [
                [
                    by_id[i].question,
                    " / ".join(dict.fromkeys(by_id[i].answers)),
                    f"{x.name}: {x.predictions[i]}",
                    f"{y.name}: {y.predictions.get(i, '')}",
                ]
                for i in chosen
            ]
    blocks.append(
        Block(
            "table",
            headers=["run A", "run B", "questions", "same answer", "both right", "only A right", "only B right"],
            rows=rows,
        )
    )
    blocks += [
        Block("h3", "Where one run is right and another wrong"),
        Block(
            "p",
            "Right: exact match; wrong: F1 below 50. Each pair of runs on the questions both were scored on, "
            "the same questions as its paired comparison.",
        ),
        Block("table", headers=["question", "gold", "right", "wrong"], rows=examples),
    ]
    return blocks


def load_qualitative() -> list[dict[str, Any]]:
    """The project's own hand-written examples (src/peftqa/examples/qualitative.json)."""
    text = resources.files("peftqa.examples").joinpath("qualitative.json").read_text(encoding="utf-8")
    return json.loads(text)["examples"]


def _qualitative_section(results: list[RunResult], log: Callable[[str], None]) -> list[Block]:
    from peftqa.predict import answer_question

    examples = load_qualitative()
    answers: list[list[str]] = [[] for _ in examples]
    for result in results:
        log(f"report: answering {len(examples)} hand-written questions with {result.name}")
        loaded = runs.load_run(result.run_dir)
        for row, example in zip(answers, examples, strict=True):
            ranked = answer_question(
                loaded.model, loaded.tokenizer, example["question"], example["context"], 1, loaded.config.scoring
            )
            text = ranked[0].text if ranked else ""
            if example["answers"]:
                score = score_answer(text, example["answers"])
                text += f" (EM {score['exact_match']:.0f}, F1 {score['f1']:.0f})"
            row.append(text)
    blocks = [
        Block("h2", "Qualitative: the project's hand-written examples"),
        Block(
            "p",
            "Every run answers the same hand-written questions (src/peftqa/examples/qualitative.json); "
            "EM/F1 where a true answer exists.",
        ),
    ]
    for category in dict.fromkeys(e["category"] for e in examples):
        rows = [
            [e["question"], " / ".join(e["answers"]) or "(several pieces / open)", *row]
            for e, row in zip(examples, answers, strict=True)
            if e["category"] == category
        ]
        blocks += [
            Block("h3", category),
            Block("table", headers=["question", "true answer", *[r.name for r in results]], rows=rows),
        ]
    return blocks


def build_report(
    run_dirs: Sequence[str | Path],
    sweep_dirs: Sequence[str | Path] = (),
    out_dir: str | Path = "report",
    qualitative: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Write report.md (+ figures/) and a self-contained report.html; returns their paths.

    Args:
        run_dirs: finished run directories to compare.
        sweep_dirs: sweep directories whose curves and trials to include.
        out_dir: where the report goes.
        qualitative: answer the hand-written examples with every run (loads each model once).
        log: where progress lines go.
    """
    from peftqa.sweep import read_sweep

    results = load_results(run_dirs)
    sweeps = [read_sweep(folder) for folder in sweep_dirs]
    out = Path(out_dir)
    blocks = [
        Block("h1", "peftqa report"),
        Block("p", f"Runs: {', '.join(r.name for r in results)}. Written by `peftqa report`."),
    ]
    blocks += _findings_section(results, sweeps)
    blocks += _results_section(results) + _comparison_section(results) + _seeds_section(results)
    blocks += _sweep_section(sweeps) + _curves_section(results)
    blocks += _error_section(results)
    if qualitative:
        blocks += _qualitative_section(results, log)
    markdown = render_markdown(blocks, out / FIGURES_DIR)
    runs.write_bytes_atomic(out / REPORT_MD, markdown.encode())
    runs.write_bytes_atomic(out / REPORT_HTML, render_html(blocks, "peftqa report").encode())
    return out / REPORT_MD, out / REPORT_HTML
