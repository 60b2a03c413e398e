"""The report's table of a run's held-out evaluations (--eval-every-steps): every step scored, the one
whose weights were kept and the one early stopping ended at."""

from __future__ import annotations

from peftqa.report.render import Block
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
            f"{e['eval_loss']:.3f}",
            f"{e['exact_match']:.2f}",
            f"{e['f1']:.2f}",
            ("kept" if e["step"] == m.get("kept_step") else "") + (" stopped" if e["step"] == stopped else ""),
        ]
        for e in m["validation"]
    ]
    headers = ["step", "validation loss", "validation EM", "validation F1", "note"]
    return [Block("p", note), Block("table", headers=headers, rows=rows)]
