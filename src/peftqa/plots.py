"""Figures written next to results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from peftqa.files import write_bytes_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(
    history: list[dict], step_losses: list[float], path: Path, title: str = "", eval_split: str = "dev"
) -> None:
    """Training loss per step (smoothed) and the scored questions' loss per epoch (`eval_split`: dev or
    validation, the legend says which), on one axis of steps."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=110)
    if step_losses:
        window = max(1, len(step_losses) // 50)
        smoothed = [
            sum(step_losses[max(0, i - window + 1) : i + 1]) / len(step_losses[max(0, i - window + 1) : i + 1])
            for i in range(len(step_losses))
        ]
        axis.plot(range(1, len(smoothed) + 1), smoothed, label="train loss (smoothed)")
    if history:
        axis.plot([h["step"] for h in history], [h["eval_loss"] for h in history], "o-", label=f"{eval_split} loss")
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("loss")
    axis.set_title(title, fontsize=9)
    axis.legend()
    _save(figure, plt, path)


def _png(figure, plt) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _save(figure, plt, path: Path) -> None:
    write_bytes_atomic(path, _png(figure, plt))


def _sweep_lines(summary: dict) -> dict[str, list[tuple[float, float, list[float] | None]]]:
    """Complete trials as (lr, F1, F1's 95% interval or None) points, one line per value of the other
    parameters. Sweeps written before trials kept their interval have None."""
    lines: dict[str, list[tuple[float, float, list[float] | None]]] = {}
    for row in summary["trials"]:
        if row["state"] != "COMPLETE":
            continue
        others = ", ".join(f"{k}={v:g}" for k, v in sorted(row["params"].items()) if k != "lr")
        point = (row["params"]["lr"], row["f1"], row.get("f1_ci"))
        lines.setdefault(others or summary["method"], []).append(point)
    return {label: sorted(points, key=lambda point: point[0]) for label, points in lines.items()}


def plot_sweep(summary: dict, path: Path) -> None:
    """Trial F1 against learning rate (log scale) for one sweep; the best trial is circled."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=110)
    draw_sweep(axis, summary)
    _save(figure, plt, path)


def draw_sweep(axis, summary: dict, label_prefix: str = "") -> None:
    """F1 against learning rate, with each trial's 95% interval as an error bar when the sweep kept them:
    points whose bars overlap were not told apart by the held-out questions."""
    for label, points in _sweep_lines(summary).items():
        lrs, f1s = [p[0] for p in points], [p[1] for p in points]
        intervals = [p[2] for p in points]
        if all(intervals):
            below = [f1 - low for f1, (low, _) in zip(f1s, cast(list, intervals), strict=True)]
            above = [high - f1 for f1, (_, high) in zip(f1s, cast(list, intervals), strict=True)]
            axis.errorbar(lrs, f1s, yerr=[below, above], fmt="o-", capsize=3, label=label_prefix + label)
        else:
            axis.plot(lrs, f1s, "o-", label=label_prefix + label)
    pruned = [
        (row["params"]["lr"], row["f1"])
        for row in summary["trials"]
        if row["state"] == "PRUNED" and row["f1"] is not None
    ]
    if pruned:
        axis.plot([p[0] for p in pruned], [p[1] for p in pruned], "x", color="gray", label=label_prefix + "pruned")
    best = summary.get("best")
    if best:
        axis.plot([best["params"]["lr"]], [best["f1"]], "o", markersize=14, fillstyle="none", color="black")
    axis.set_xscale("log")
    # Ticks at the values tried: a short log range otherwise gets overlapping minor-tick labels.
    tried = sorted({p[0] for points in _sweep_lines(summary).values() for p in points})
    if tried:
        axis.set_xticks(tried, [f"{lr:g}" for lr in tried])
        axis.xaxis.set_minor_formatter("")
    axis.set_xlabel("learning rate")
    # Sweeps written before held-out scoring (no eval_split) were scored on dev questions.
    axis.set_ylabel("held-out train F1" if summary.get("eval_split") == "validation" else "dev F1")
    axis.set_title(f"{summary['method']}: {summary['train_questions']} questions, {summary['epochs']:g} epoch(s)")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)


def sweeps_png(summaries: Sequence[dict[str, Any]]) -> bytes:
    """One panel per sweep, side by side: F1 against learning rate."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(summaries), figsize=(4.2 * len(summaries), 3.4), dpi=100, squeeze=False)
    for axis, summary in zip(axes[0], summaries, strict=True):
        draw_sweep(axis, summary)
    return _png(figure, plt)


def pareto_png(points: list[tuple[str, int, float]], front: list[str]) -> bytes:
    """F1 against trainable parameters (log scale); the Pareto-optimal runs joined by a line.

    Args:
        points: (label, trainable parameters, F1) per run.
        front: labels of the runs on the Pareto front, fewest parameters first.
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.8), dpi=110)
    by_label = {label: (params, f1) for label, params, f1 in points}
    for label, (params, f1) in by_label.items():
        axis.plot([params], [f1], "o", color="tab:blue" if label in front else "tab:gray")
        axis.annotate(label, (params, f1), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.plot(
        [by_label[k][0] for k in front], [by_label[k][1] for k in front], "--", color="tab:blue", label="Pareto front"
    )
    axis.set_xscale("log")
    axis.set_xlabel("trainable parameters (log scale)")
    axis.set_ylabel("dev F1")
    axis.legend(fontsize=8)
    return _png(figure, plt)


def budgets_png(series: dict[str, list[tuple[int, float, tuple[float, float]]]]) -> bytes:
    """Dev F1 against training questions (log scale), one line per method, 95% intervals as error bars.

    Args:
        series: method label -> (training questions, F1, (low, high)) per budget.
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.8), dpi=110)
    for label, points in series.items():
        points = sorted(points)
        budgets, f1s = [p[0] for p in points], [p[1] for p in points]
        below = [f1 - low for (_, f1, (low, _high)) in points]
        above = [high - f1 for (_, f1, (_low, high)) in points]
        axis.errorbar(budgets, f1s, yerr=[below, above], fmt="o-", capsize=3, label=label)
    axis.set_xscale("log")
    tried = sorted({p[0] for points in series.values() for p in points})
    if tried:
        axis.set_xticks(tried, [f"{b:,}" for b in tried])
        axis.xaxis.set_minor_formatter("")
    axis.set_xlabel("training questions (log scale)")
    axis.set_ylabel("dev F1")
    axis.legend(fontsize=8)
    return _png(figure, plt)
