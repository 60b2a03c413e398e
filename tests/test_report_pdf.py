"""`peftqa report --pdf`: report.html printed by Debian's chromium (Playwright), read back with pypdf.

The printing test needs /usr/bin/chromium (`make browser-deps`) and is skipped without it; the
one-line refusal without chromium or playwright is checked everywhere.
"""

from __future__ import annotations

import re
import sys

import pytest

from peftqa.cli.commands import main
from peftqa.report import pdf
from tests.helpers import fake_run, fake_sweep
from tests.squad_fixtures import many_articles, write_squad


@pytest.fixture
def dev_dir(tmp_path):
    """SQuAD files whose dev set has 30 questions (12 articles), as the fake runs answer."""
    return write_squad(tmp_path / "squad", dev=many_articles(12))


def _two_fake_runs(data_dir, root):
    right = [k % 3 != 0 for k in range(30)]
    return [
        fake_run(root / "lora", data_dir, "lora", right),
        fake_run(root / "full", data_dir, "full", [True] * 30, trainable=100_000),
    ]


def _single_spaced(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.browser
@pytest.mark.skipif(not pdf.CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make browser-deps` (apt-get)")
def test_report_pdf_has_a_page_per_section_its_figures_and_the_findings(dev_dir, tmp_path, capsys):
    pytest.importorskip("playwright.sync_api")
    pypdf = pytest.importorskip("pypdf")
    runs = _two_fake_runs(dev_dir, tmp_path)
    out = tmp_path / "report"
    argv = ["report", *map(str, runs), "--sweep", str(fake_sweep(tmp_path / "sweep")), "--out", str(out)]
    assert main([*argv, "--no-qualitative", "--pdf"]) == 0
    assert "report.pdf" in capsys.readouterr().out

    markdown = (out / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", markdown, flags=re.M)
    reader = pypdf.PdfReader(out / "report.pdf")
    # Every section starts a page (print CSS), so there is at least one page per section.
    assert len(reader.pages) >= len(sections) >= 5, (len(reader.pages), sections)
    text = _single_spaced(" ".join(page.extract_text() for page in reader.pages))
    findings = markdown.split("## Findings\n\n", 1)[1].split("\n\n", 1)[0]
    first_sentence = re.sub(r"[*`]", "", findings).split(". ")[0]
    assert _single_spaced(first_sentence) in text, (first_sentence, text[:500])
    for section in sections:
        assert section in text, section
    # The figures are in the PDF as images (the sweep and the Pareto plot here), not lost in printing.
    figures = len(re.findall(r"!\[", markdown))
    assert sum(len(page.images) for page in reader.pages) >= figures >= 2

    # Without --pdf the report is rewritten and the older PDF, which no longer matches it, removed.
    assert main([*argv, "--no-qualitative"]) == 0
    assert not (out / "report.pdf").exists()


@pytest.mark.parametrize("missing", ["chromium", "playwright"])
def test_pdf_without_chromium_or_playwright_is_one_line_and_writes_nothing(
    dev_dir, tmp_path, capsys, monkeypatch, missing
):
    if missing == "chromium":
        monkeypatch.setattr(pdf, "CHROMIUM", tmp_path / "no-chromium")
    else:
        monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # `import` then raises ImportError
    runs = _two_fake_runs(dev_dir, tmp_path)
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--no-qualitative", "--pdf"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("peftqa: error: --pdf needs") and error.count("\n") == 1 and missing in error.lower()
    assert not out.exists()
