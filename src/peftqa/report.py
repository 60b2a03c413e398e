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

from peftqa import runs
from peftqa.data import Example, load_squad, split_path
from peftqa.errors import PeftqaError
from peftqa.metrics import normalize_answer, score_answer

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
QUESTION_TYPES = ("what", "who", "when", "where", "why", "how many", "other")
ANSWER_LENGTHS = (("1 word", 1, 1), ("2-3 words", 2, 3), ("4-6 words", 4, 6), ("7+ words", 7, 10**9))
_WH_WORDS = re.compile(r"\b(how many|how much|who|whom|whose|when|where|why|what|which)\b")
_WH_TYPE = {"how much": "how many", "whom": "who", "whose": "who", "which": "what"}
_DISAGREEMENT_EXAMPLES = 3  # per pair of runs and direction


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


def load_results(run_dirs: Sequence[str | Path]) -> list[RunResult]:
    """Every run's settings, metrics, predictions and dev questions (each dev file read once)."""
    if not run_dirs:
        raise PeftqaError("name at least one run directory")
    dev_cache: dict[tuple[str, int | None], list[Example]] = {}
    results = []
    for run_dir in run_dirs:
        folder, settings = runs.check_run_dir(run_dir)
        metrics = runs.read_json(folder / runs.METRICS_JSON)
        predictions = runs.read_json(folder / runs.PREDICTIONS_JSON)
        config = settings["config"]
        key = (str(split_path(config.get("data_dir"), "dev")), config.get("eval_limit"))
        if key not in dev_cache:
            dev_cache[key] = load_squad(key[0], key[1])
        examples = [e for e in dev_cache[key] if e.id in predictions]
        results.append(RunResult(folder, folder.name, settings, metrics, predictions, examples))
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
    return {e.id: score_answer(result.predictions.get(e.id, ""), e.answers) for e in result.examples}


def f1_by_group(
    results: list[RunResult], scores: list[dict], group: Callable[[Example], str], order: Sequence[str]
) -> list[list[Any]]:
    """Rows: group, number of questions, then each run's mean F1 over the group's questions."""
    rows = []
    examples = results[0].examples
    for label in order:
        ids = [e.id for e in examples if group(e) == label]
        if not ids:
            continue
        means = [sum(s[i]["f1"] for i in ids if i in s) / len(ids) for s in scores]
        rows.append([label, len(ids), *[f"{m:.1f}" for m in means]])
    return rows


def pareto_front(points: list[tuple[str, int, float]]) -> list[str]:
    """Labels of the runs no other run beats with fewer (or as many) parameters, fewest first."""
    front, best = [], float("-inf")
    for label, _, f1 in sorted(points, key=lambda p: (p[1], -p[2])):
        if f1 > best:
            front.append(label)
            best = f1
    return front


# ---------------------------------------------------------------- the sections


def _results_section(results: list[RunResult]) -> list[Block]:
    rows = [[r.name, *result_row(r.metrics)] for r in results]
    shown = {r.metrics.get("dev_questions") for r in results}
    note = (
        f"Scored on {', '.join(str(n) for n in sorted(shown, key=str))} SQuAD v1.1 dev questions. Adapter size is "
        "the saved artifact on disk (adapter + QA head, or the whole model); features/s is training throughput."
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
        Block("table", headers=["run", *RESULT_HEADERS], rows=rows),
        Block(
            "table", headers=["run", "lr", "train questions", "epochs", "max length", "batch", "device"], rows=settings
        ),
    ]


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


def _sweep_section(sweep_dirs: Sequence[str | Path]) -> list[Block]:
    from peftqa.report_plots import sweeps_png
    from peftqa.sweep import read_sweep

    if not sweep_dirs:
        return []
    summaries = [read_sweep(folder) for folder in sweep_dirs]
    blocks = [
        Block("h2", "Learning-rate sweeps"),
        Block(
            "p",
            "Each trial trains on a seeded random sample of the training questions and is scored on dev; "
            "the best is the highest F1 (EM breaks ties), circled.",
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
            Block("p", f"{verdict}. {warnings}".strip()),
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
    by_id = {e.id: e for e in results[0].examples}
    for (a, sa), (b, sb) in itertools.combinations(zip(results, scores, strict=True), 2):
        ids = [i for i in sa if i in sb]
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
    results = load_results(run_dirs)
    out = Path(out_dir)
    blocks = [
        Block("h1", "peftqa report"),
        Block("p", f"Runs: {', '.join(r.name for r in results)}. Written by `peftqa report`."),
    ]
    blocks += _results_section(results) + _sweep_section(sweep_dirs) + _curves_section(results)
    blocks += _error_section(results)
    if qualitative:
        blocks += _qualitative_section(results, log)
    markdown = render_markdown(blocks, out / FIGURES_DIR)
    runs.write_bytes_atomic(out / REPORT_MD, markdown.encode())
    runs.write_bytes_atomic(out / REPORT_HTML, render_html(blocks, "peftqa report").encode())
    return out / REPORT_MD, out / REPORT_HTML
