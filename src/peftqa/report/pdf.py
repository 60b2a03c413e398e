"""report.html printed to report.pdf by headless Chromium: Debian's /usr/bin/chromium driven by Playwright.

Playwright is only the driver here: it is given the system's chromium, never a browser of its own
(`playwright install` downloads one, which machines without that download site cannot fetch). How
the pages break (each section on a new page, no table or figure cut in two, headings kept with what
follows) is the page's own print CSS (render.py), so printing the html from any browser breaks it
the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from peftqa import files
from peftqa.errors import PeftqaError

CHROMIUM = Path("/usr/bin/chromium")
# Headless and offline: the pages it is given load nothing, and nothing it would fetch on its own is wanted
# (the browser tests launch it the same way).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def check_pdf_printer() -> None:
    """Return when a PDF can be printed here; else a PeftqaError saying what to install.

    Checked before a report is built, so a missing printer costs nothing and leaves no file behind.
    """
    if not CHROMIUM.exists():
        raise PeftqaError(f"--pdf needs Chromium at {CHROMIUM} (Debian: apt-get install chromium; `make browser-deps`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise PeftqaError("--pdf needs the playwright package (pip install playwright; no browser download)") from None


def print_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike) -> Path:
    """Print the self-contained html page at `html_path` to an A4 PDF at `pdf_path`; returns `pdf_path`.

    Raises:
        PeftqaError: no chromium or playwright (check_pdf_printer), or chromium failed to print the page.
    """
    check_pdf_printer()
    from playwright.sync_api import Error, PdfMargins, sync_playwright

    page_html = Path(html_path).read_text(encoding="utf-8")
    margin = PdfMargins(top="14mm", bottom="14mm", left="14mm", right="14mm")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_content(page_html, wait_until="load")
                document = page.pdf(format="A4", print_background=True, margin=margin)
            finally:
                browser.close()
    except Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PeftqaError(f"chromium could not print {html_path}: {reason}") from None
    files.write_bytes_atomic(Path(pdf_path), document)
    return Path(pdf_path)
