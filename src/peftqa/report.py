"""Results -> tables a person reads."""

from __future__ import annotations

from collections.abc import Sequence


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def results_table(metrics: Sequence[dict]) -> str:
    """A markdown table: one row per run's metrics.json."""
    header = "| method | model | EM | F1 | trainable params | % | adapter size | train s | features/s |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in metrics:
        lines.append(
            f"| {m['method']} | {m['model']} | {m['exact_match']:.2f} | {m['f1']:.2f} | "
            f"{m['trainable_params']:,} | {m['trainable_percent']:.2f} | {_human_bytes(m.get('artifact_bytes', 0))} | "
            f"{m['train_seconds']:.0f} | {m['train_features_per_second']:.1f} |"
        )
    return "\n".join(lines)
