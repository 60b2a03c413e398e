"""The report's building blocks and how they are written: one list of blocks, rendered as markdown
(figures as PNG files beside it) and as one self-contained html file, plus the results table that
`peftqa study` also prints."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftqa import files


def human_bytes(count: float) -> str:
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
    "steps",
    "train s",
    "trainable params",
    "%",
    "adapter size",
    "features/s",
    "peak memory",
]


def figure(value: Any, digits: int) -> str:
    """A number for a table; "–" for one that is not there or not a number (a diverged run's loss)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "–"


def result_row(m: dict) -> list[str]:
    """One run's metrics.json as table cells (peak memory: `peak_memory_mb`, peak RSS on CPU, GPU memory on CUDA);
    the compute beside the scores: optimiser steps trained (and whose weights early stopping kept) and seconds."""
    peak = m.get("peak_memory_mb", 0) * 2**20
    steps, kept = m.get("steps"), m.get("kept_step")
    return [
        m["method"],
        m["model"],
        f"{m['exact_match']:.2f}",
        f"{m['f1']:.2f}",
        "n/a" if steps is None else f"{steps:,}" + (f" (kept {kept:,})" if kept not in (None, steps) else ""),
        f"{m['train_seconds']:.0f}",
        f"{m['trainable_params']:,}",
        f"{m['trainable_percent']:.2f}",
        human_bytes(m.get("artifact_bytes", 0)),
        f"{m['train_features_per_second']:.1f}",
        human_bytes(peak) if peak else "n/a",
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
            files.write_bytes_atomic(figures_dir / block.name, block.png)
            parts.append(f"![{block.text}]({figures_dir.name}/{block.name})")
    return "\n\n".join(parts) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555}"
    # Printed (report.pdf, or a browser's print): every section after the first on a new page, no table,
    # row or figure cut across two pages, and no heading left alone at the foot of a page.
    # A note just before its table or figure stays with it too (a table longer than a page still breaks,
    # between rows, its header repeated).
    "@media print{body{max-width:none;margin:0;padding:0}h2~h2{break-before:page}"
    "table,tr,figure,img{break-inside:avoid}thead{display:table-header-group}"
    "h1,h2,h3,p:has(+table),p:has(+figure){break-after:avoid}"
    "th{-webkit-print-color-adjust:exact;print-color-adjust:exact}}"
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
