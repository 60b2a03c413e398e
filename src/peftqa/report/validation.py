"""The report's table of a run's held-out evaluations (--eval-every-steps): every step scored, the one
whose weights were kept and the one early stopping ended at."""

from __future__ import annotations

from collections.abc import Sequence

from peftqa.report.render import Block, figure
from peftqa.report.results import RunResult


def validation_blocks(r: RunResult) -> list[Block]:
    """Every held-out evaluation of a run with --eval-every-steps, the kept and the stopping step marked."""
    m = r.metrics
    if not m.get("validation"):
        return []
    stopped = m.get("stopped_at_step")
    note = (
        f"{r.name}: held-out training articles ({m.get('validation_description') or 'validation'}) scored every "
        f"{r.config.get('eval_every_steps')} steps; "
        + (f"early stopping at step {stopped}" if stopped else "no early stop")
        + f"; dev scored once, with step {m.get('kept_step')}'s weights."
    )
    rows = [
        [
            e["step"],
            figure(e["eval_loss"], 3),
            figure(e["exact_match"], 2),
            figure(e["f1"], 2),
            ("kept" if e["step"] == m.get("kept_step") else "") + (" stopped" if e["step"] == stopped else ""),
        ]
        for e in m["validation"]
    ]
    headers = ["step", "validation loss", "validation EM", "validation F1", "note"]
    return [Block("p", note), Block("table", headers=headers, rows=rows)]


def learning_blocks(results: Sequence[RunResult]) -> list[Block]:
    """Every run's held-out F1 as it trained, side by side: after each epoch when some run trained
    several, else at each held-out evaluation; a method still rising at its end learns late, and a
    fixed budget may have stopped it early. Nothing for runs without held-out evaluations."""
    by_epoch = any(len(r.metrics.get("history", [])) > 1 for r in results)
    series = {r.name: _held_out_series(r, by_epoch) for r in results}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return []
    columns = sorted({key for points in series.values() for key in points})
    rows, rises = [], {}
    for name, points in series.items():
        keys = sorted(points)
        if len(keys) > 1:
            rises[name] = points[keys[-1]] - points[keys[-2]]
        cells = [f"{points[key]:.2f}" if key in points else "" for key in columns]
        rows.append([name, *cells, f"{rises[name]:+.2f}" if name in rises else ""])
    top = max(rises.values(), default=0.0)
    rising = [name for name, rise in rises.items() if rise > 0 and rise == top]
    note = (
        "Held-out F1 (training articles kept out of training, never dev) "
        + ("after each epoch" if by_epoch else "at each held-out evaluation")
        + "; the last column is the rise since the evaluation before the last: a method still rising at its end "
        "may rank higher with more training." + (f" Rising most at the end: {', '.join(rising)}." if rising else "")
    )
    headers = ["run", *(f"epoch {key}" if by_epoch else f"step {key}" for key in columns), "last rise"]
    return [Block("h2", "Held-out F1 while training"), Block("p", note), Block("table", headers=headers, rows=rows)]


def _held_out_series(r: RunResult, by_epoch: bool) -> dict[int, float]:
    """epoch -> held-out F1 (`by_epoch`), else step -> held-out F1; {} without held-out evaluations."""
    m = r.metrics
    if not m.get("validation"):
        return {}
    if by_epoch:
        return {entry["epoch"]: entry["f1"] for entry in m.get("history", [])}
    return {entry["step"]: entry["f1"] for entry in m["validation"]}
