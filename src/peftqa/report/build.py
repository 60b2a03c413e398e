"""Results -> a report a person reads: `peftqa report RUN_DIR... [--sweep DIR...] --out DIR`.

The report is built once as a list of blocks (headings, text, tables, figures) and rendered twice:
`report.md` (figures as PNG files beside it) and a self-contained `report.html` (figures inline as
base64, no external files), so the two never say different things; with `pdf`, that html is
printed to `report.pdf` by headless Chromium (module `pdf`).

Read in data-flow order: `results` (runs loaded with per-question scores) -> `compare` (seeds grouped,
paired comparisons) -> `findings` (paragraphs from the numbers) -> `sections` (blocks; `answerability`
for SQuAD 2.0 data) -> `render` (markdown and html). This module only puts the sections together and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from peftqa import files
from peftqa.errors import PeftqaError
from peftqa.report.answerability import answerability_section
from peftqa.report.budgets import budget_blocks
from peftqa.report.pdf import check_pdf_printer, print_pdf
from peftqa.report.render import Block, render_html, render_markdown
from peftqa.report.results import load_results
from peftqa.report.sections import (
    _comparison_section,
    _curves_section,
    _error_section,
    _findings_section,
    _qualitative_section,
    _results_section,
    _seeds_section,
    _sweep_section,
)
from peftqa.report.validation import learning_blocks

TITLE = "peftqa report"  # report.md's first line: how an earlier report is told from a user's own files
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
FIGURES_DIR = "figures"


def build_report(
    run_dirs: Sequence[str | Path],
    sweep_dirs: Sequence[str | Path] = (),
    out_dir: str | Path = "report",
    qualitative: bool = True,
    log: Callable[[str], None] = print,
    pdf: bool = False,
    budget_runs: Sequence[str | Path] = (),
    force: bool = False,
) -> tuple[Path, Path]:
    """Write report.md (+ figures/) and a self-contained report.html; returns their paths.

    Args:
        run_dirs: finished run directories to compare.
        sweep_dirs: sweep directories whose curves and trials to include.
        out_dir: where the report goes.
        qualitative: answer the hand-written examples with every run (loads each model once).
        log: where progress lines go.
        pdf: also print report.html to report.pdf beside it (headless Chromium: `print_pdf`).
        budget_runs: runs at several training budgets (`peftqa study --budgets`): F1 against budget, and
            where the order of the methods changes.
        force: write into an `out_dir` that holds files other than an earlier peftqa report.

    Raises:
        PeftqaError: a run cannot be read, `out_dir` holds the user's own files (without `force`) or
            cannot be written, or `pdf` without chromium or playwright (before anything is written).
    """
    from peftqa.sweep import read_sweep

    out = Path(out_dir)
    if files.destination_state(out, "--out", is_report) == "theirs" and not force:
        raise PeftqaError(
            f"--out {out} holds files that are not a peftqa report (its {REPORT_MD} would be replaced); "
            "choose another folder, or pass --force to write the report among them"
        )
    if pdf:
        check_pdf_printer()
    results = load_results(run_dirs)
    by_budget = load_results(budget_runs) if budget_runs else []
    sweeps = [read_sweep(folder) for folder in sweep_dirs]
    blocks = [
        Block("h1", TITLE),
        Block("p", f"Runs: {', '.join(r.name for r in results)}. Written by `peftqa report`."),
    ]
    blocks += _findings_section(results, sweeps, by_budget)
    blocks += _results_section(results) + budget_blocks(by_budget) + learning_blocks(results)
    blocks += answerability_section(results)
    blocks += _comparison_section(results) + _seeds_section(results)
    blocks += _sweep_section(sweeps) + _curves_section(results)
    blocks += _error_section(results)
    if qualitative:
        blocks += _qualitative_section(results, log)
    markdown = render_markdown(blocks, out / FIGURES_DIR)
    files.write_bytes_atomic(out / REPORT_MD, markdown.encode())
    files.write_bytes_atomic(out / REPORT_HTML, render_html(blocks, TITLE).encode())
    if pdf:
        print_pdf(out / REPORT_HTML, out / REPORT_PDF)
    else:
        # A report.pdf of an earlier report would say other things than the html beside it.
        (out / REPORT_PDF).unlink(missing_ok=True)
    return out / REPORT_MD, out / REPORT_HTML


def is_report(folder: Path) -> bool:
    """Whether `folder` holds a report peftqa wrote (its report.md starts with the report's title)."""
    try:
        with (folder / REPORT_MD).open(encoding="utf-8") as handle:
            return handle.readline().rstrip("\n") == f"# {TITLE}"
    except (OSError, UnicodeDecodeError):
        return False
