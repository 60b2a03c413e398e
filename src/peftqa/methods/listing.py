"""`peftqa methods`: what a user weighs when choosing a method, one row per registered method."""

from __future__ import annotations

from peftqa.methods.registry import COUNTED_ON, METHODS

HEADERS = [
    "method",
    "default lr",
    "trainable on DistilBERT",
    "trainable on MiniLM-L6",
    "export hf",
    "shares a served base",
    "description",
]


def _count(count: int, total: int) -> str:
    return f"{count:,} ({100 * count / total:.2f}%)"


def methods_rows() -> list[list[str]]:
    """Each method's defaults and costs (trainable parameters with the QA head, on distilbert-base-uncased's
    and MiniLM-L6's shapes), sorted by how much they train."""
    rows = []
    for spec in sorted(METHODS.values(), key=lambda s: (s.trainable_params["minilm-l6"], s.name)):
        rows.append(
            [
                spec.name,
                f"{spec.default_lr:g}",
                _count(spec.trainable_params["distilbert"], COUNTED_ON["distilbert"]),
                _count(spec.trainable_params["minilm-l6"], COUNTED_ON["minilm-l6"]),
                "yes" if spec.merges else "no (onnx only)",
                "yes" if spec.shares_base else "no",
                spec.description,
            ]
        )
    return rows


def methods_table() -> str:
    """The rows as aligned plain text for a terminal."""
    table = [HEADERS, *methods_rows()]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in table
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths) + "  " + "-" * 11, *lines[1:]])
