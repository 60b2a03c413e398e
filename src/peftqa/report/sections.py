"""The report's sections, in the order it prints them: each builder turns loaded runs (or sweep
summaries) into blocks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from peftqa.inference import run_folder
from peftqa.report.agreement import agreement_blocks
from peftqa.report.findings import findings, sweep_questions
from peftqa.report.pairing import (
    BEYOND_HEAD,
    NOT_BEYOND_HEAD,
    beyond_head,
    compare,
    floor_of,
    group_runs,
    reference_run,
    signed_difference,
    verdict,
)
from peftqa.report.render import RESULT_HEADERS, Block, figure, result_row
from peftqa.report.results import (
    ANSWER_LENGTHS,
    BOOTSTRAP_SEED,
    METRIC_NAMES,
    NO_ANSWER,
    QUESTION_TYPES,
    RESAMPLES,
    RunResult,
    answer_length,
    f1_by_group,
    pareto_front,
    per_question_scores,
    question_type,
)
from peftqa.report.validation import validation_blocks
from peftqa.scoring.metrics import score_answer
from peftqa.scoring.stats import format_interval
from peftqa.sweep.rungs import separation_text


def results_rows(results: Sequence[RunResult]) -> tuple[list[str], list[list[str]]]:
    """The report's results table: headers, and one row per run with EM and F1 as 'mean [95% CI]'; when a
    run trained the QA head alone, a column after F1 says whether each run's F1 is above that floor."""
    headers = [f"{h} [95% CI]" if h in METRIC_NAMES.values() else h for h in RESULT_HEADERS]
    em, f1, method = (RESULT_HEADERS.index(h) for h in ("EM", "F1", "method"))
    floor = floor_of(results)
    rows = []
    for r in results:
        cells = result_row(r.metrics)
        cells[method] = r.method_label
        cells[em], cells[f1] = r.formatted("exact_match"), r.formatted("f1")
        if floor is not None:
            cells.insert(f1 + 1, beyond_head(r, floor))
        rows.append([r.name, *cells])
    if floor is not None:
        headers.insert(f1 + 1, f"F1 beyond the QA head ({floor.name})")
    return ["run", *headers], rows


def _results_section(results: list[RunResult]) -> list[Block]:
    headers, rows = results_rows(results)
    note = (
        f"{_questions_note(results)} EM and F1 are means over those questions with 95% percentile-bootstrap "
        f"intervals ({RESAMPLES:,} resamples of the questions, seed {BOOTSTRAP_SEED}): they cover which questions "
        "were asked, not the luck of training. Adapter size is the saved artifact on disk (adapter + QA head, or "
        "the whole model); features/s is training throughput."
    )
    floor = floor_of(results)
    if floor is not None:
        note += (
            f" F1 beyond the QA head: each run minus {floor.name}, which trained the QA head alone (every method "
            "trains that head besides its own parameters), paired on the questions both were scored on; 'yes' "
            f"where the 95% paired interval is above 0 ({BEYOND_HEAD}), else 'not shown' ({NOT_BEYOND_HEAD})."
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
            f"{r.head_learning_rate or 0:g}",
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
        Block("table", headers=headers, rows=rows),
        Block(
            "table",
            headers=["run", "lr", "head lr", "train questions", "epochs", "max length", "batch", "device"],
            rows=settings,
        ),
    ]


def _questions_note(results: Sequence[RunResult]) -> str:
    """Which questions each run's figures use: one sentence when all runs share the rule, else one per run."""
    described = {r.name: r.scored_on for r in results}
    if len(set(described.values())) == 1:
        return f"Every run is scored on {next(iter(described.values()))}."
    return (
        "Runs are scored on different questions: "
        + "; ".join(f"{name}: {text}" for name, text in described.items())
        + ". Comparisons between two runs use only the questions both were scored on."
    )


def _findings_section(
    results: list[RunResult], sweeps: Sequence[dict[str, Any]], budgets: Sequence[RunResult] = ()
) -> list[Block]:
    return [
        Block("h2", "Findings"),
        *[Block("p", paragraph) for paragraph in findings(results, sweeps, budgets)],
    ]


def comparison_rows(results: Sequence[RunResult]) -> tuple[list[str], list[list[Any]]]:
    """The paired-comparison table: every run minus full fine-tuning (else the best run by F1), F1 and EM
    in points with 95% paired-bootstrap intervals and whether each is settled; no rows for a single run."""
    if len(results) < 2:
        return [], []
    reference, _ = reference_run(results)
    rows: list[list[Any]] = []
    for r in results:
        if r is reference:
            continue
        f1, em = compare(r, reference, "f1"), compare(r, reference, "exact_match")
        rows.append([r.name, f1["questions"], signed_difference(f1), verdict(f1), signed_difference(em), verdict(em)])
    headers = ["run", "shared questions", f"F1 - {reference.name}", "F1", f"EM - {reference.name}", "EM"]
    return headers, rows


def _comparison_section(results: list[RunResult]) -> list[Block]:
    """Every run against full fine-tuning (else the best run): paired differences with their intervals."""
    if len(results) < 2:
        return []
    reference, why = reference_run(results)
    headers, rows = comparison_rows(results)
    note = (
        f"Each run minus {reference.name} ({why}), on the questions both were scored on, in points, with 95% "
        f"paired-bootstrap intervals ({RESAMPLES:,} resamples of the shared questions, seed {BOOTSTRAP_SEED}). "
        "Settled: the interval excludes 0, so which of the two is better is not the luck of the questions."
    )
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
    from peftqa.plots import pareto_png

    blocks = [Block("h2", "Training curves")]
    for r in results:
        curve = r.run_dir / run_folder.LOSS_CURVE
        if curve.is_file():
            blocks.append(
                Block(
                    "figure",
                    f"{r.name}: train and dev loss",
                    png=curve.read_bytes(),
                    name="loss-" + re.sub(r"[^\w.-]", "_", r.name) + ".png",
                )
            )
        # With --eval-every-steps the epochs were scored on held-out training articles, dev only at the end.
        split = "validation" if "validation" in r.metrics else r.metrics.get("eval_split", "dev")
        history = [
            [h["epoch"], h["step"], figure(h["train_loss"], 3), figure(h["eval_loss"], 3), figure(h["f1"], 2)]
            for h in r.metrics.get("history", [])
        ]
        headers = ["epoch", "step", "train loss", f"{split} loss", f"{split} F1"]
        blocks.append(Block("table", headers=headers, rows=history))
        blocks += validation_blocks(r)
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
    from peftqa.plots import sweeps_png

    if not summaries:
        return []
    blocks = [
        Block("h2", "Learning-rate sweeps"),
        Block(
            "p",
            "Each trial trains on a seeded random sample of the training questions and is scored on the held-out "
            "questions named under each sweep at its rungs; successive halving stops (prunes) a trial behind the "
            "trials that reached a rung before it, so the rates that finish are judged after the whole run. The "
            "best is the finished trial with the highest held-out F1 (EM breaks ties), circled; a pruned trial is "
            "an x at the F1 it stopped at.",
        ),
        Block(
            "figure",
            "trial F1 (with its 95% interval where the sweep kept it) against learning rate per sweep",
            png=sweeps_png(summaries),
            name="sweeps.png",
        ),
    ]
    for summary in summaries:
        # Trials of sweeps since the honest-comparison change are scored on held-out training questions.
        scored_on = "held-out" if summary.get("eval_split") == "validation" else "dev"
        rows = [
            [
                t["number"],
                ", ".join(f"{k}={v:g}" for k, v in t["params"].items()),
                t["state"],
                "" if t.get("steps") is None else t["steps"],
                _trial_f1(t),
                "" if t["exact_match"] is None else f"{t['exact_match']:.2f}",
                "" if t.get("eval_loss") is None else f"{t['eval_loss']:.3f}",
            ]
            for t in summary["trials"]
        ]
        best = summary.get("best")
        verdict = f"best {best['params']} (F1 {best['f1']:.2f})" if best else "no complete trial"
        by_loss = summary.get("best_by_eval_loss")
        if by_loss and best and by_loss["params"] != best["params"]:
            verdict += f"; the lowest {scored_on} loss would have chosen {by_loss['params']} (F1 {by_loss['f1']:.2f})"
        warnings = " ".join(f"Warning: {w}." for w in summary.get("edge_warnings", []))
        compute = summary.get("compute")
        if compute:
            warnings = (
                f"All trials together: {compute['steps']:,} steps, {compute['train_seconds']:,.0f} s of training "
                f"(one unpruned trial: {summary.get('steps', 0):,} steps). {separation_text(summary)} {warnings}"
            )
        blocks += [
            Block(
                "h3", f"{summary['method']} ({summary['train_questions']} questions, {summary['epochs']:g} epoch(s))"
            ),
            Block("p", f"{verdict}. Scored on {sweep_questions(summary)}. {warnings}".strip()),
            Block("table", headers=["trial", "params", "state", "steps", "F1", "EM", f"{scored_on} loss"], rows=rows),
        ]
    return blocks


def _trial_f1(trial: dict[str, Any]) -> str:
    """A trial's F1, with its 95% interval when the sweep kept one (sweeps before that did not)."""
    if trial["f1"] is None:
        return ""
    if trial.get("f1_ci"):
        low, high = trial["f1_ci"]
        return format_interval(trial["f1"], low, high, digits=2)
    return f"{trial['f1']:.2f}"


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
            rows=f1_by_group(results, scores, answer_length, [label for label, _, _ in ANSWER_LENGTHS] + [NO_ANSWER]),
        ),
    ]
    return blocks + agreement_blocks(results, scores)


def load_qualitative() -> list[dict[str, Any]]:
    """The project's own hand-written examples (src/peftqa/data/examples/qualitative.json)."""
    text = resources.files("peftqa.data.examples").joinpath("qualitative.json").read_text(encoding="utf-8")
    return json.loads(text)["examples"]


def _qualitative_section(results: list[RunResult], log: Callable[[str], None]) -> list[Block]:
    from peftqa.inference.evaluate import ask

    examples = load_qualitative()
    answers: list[list[str]] = [[] for _ in examples]
    for result in results:
        log(f"report: answering {len(examples)} hand-written questions with {result.name}")
        loaded = run_folder.load_run(result.run_dir)
        for row, example in zip(answers, examples, strict=True):
            asked = ask(
                loaded.model,
                loaded.tokenizer,
                example["question"],
                example["context"],
                1,
                loaded.config.scoring,
                null_threshold=loaded.null_threshold,
            )
            answer = asked.to_dict()["answer"]
            text = "(no answer)" if asked.no_answer and asked.null_threshold is not None else answer
            if example["answers"]:
                score = score_answer(answer, example["answers"])
                text += f" (EM {score['exact_match']:.0f}, F1 {score['f1']:.0f})"
            row.append(text)
    blocks = [
        Block("h2", "Qualitative: the project's hand-written examples"),
        Block(
            "p",
            "Every run answers the same hand-written questions (src/peftqa/data/examples/qualitative.json); "
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
