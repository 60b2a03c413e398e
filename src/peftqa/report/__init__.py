"""report: see build.py (the entry point); this file only re-exports the public names."""

from peftqa.report.agreement import DISAGREEMENT_HEADERS, disagreements
from peftqa.report.build import REPORT_PDF, build_report
from peftqa.report.findings import findings
from peftqa.report.pairing import NOT_SETTLED
from peftqa.report.pdf import check_pdf_printer
from peftqa.report.render import markdown_table, render_markdown, results_table
from peftqa.report.results import answer_length, load_results, pareto_front, question_type
from peftqa.report.sections import comparison_rows, load_qualitative, results_rows

__all__ = [
    "DISAGREEMENT_HEADERS",
    "NOT_SETTLED",
    "REPORT_PDF",
    "answer_length",
    "build_report",
    "check_pdf_printer",
    "comparison_rows",
    "disagreements",
    "findings",
    "load_qualitative",
    "load_results",
    "markdown_table",
    "pareto_front",
    "question_type",
    "render_markdown",
    "results_rows",
    "results_table",
]
