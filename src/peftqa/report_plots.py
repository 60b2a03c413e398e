"""Figures written next to results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

from peftqa.runs import write_bytes_atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curve(history: list[dict], step_losses: list[float], path: Path, title: str = "") -> None:
    """Training loss per step (smoothed) and dev loss per epoch, on one axis of steps."""
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
        axis.plot([h["step"] for h in history], [h["dev_loss"] for h in history], "o-", label="dev loss")
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("loss")
    axis.set_title(title, fontsize=9)
    axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
