"""The README and docs/: a README that fits a few screens, links that resolve, and code comments that
point at docs pages that exist (so renaming a page cannot silently orphan them)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 250

# [text](target) and ![alt](target); fenced blocks and inline code are removed before looking.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A docs/ path named in code or comments (not part of a longer path or a URL).
_DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w\-./]*")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose(text: str) -> str:
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    text = unicodedata.normalize("NFKD", _CODE.sub(lambda m: m.group(0).strip("`"), heading))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(heading) for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8")))}


def links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text(encoding="utf-8")))


def test_readme_fits_a_few_screens():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no {path}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading '#{anchor}' in {path or page.name}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_docs_pages_named_in_the_code_exist():
    missing = []
    for folder in ("src", "tests", "benchmarks", "tools"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for named in _DOCS_PATH.findall(line):
                    if not (REPO / named.rstrip(".,:;")).exists():
                        missing.append(f"{path.relative_to(REPO)}:{number}: {named}")
    assert not missing, missing


def test_no_code_comment_points_into_the_readme():
    """Pointers go to docs pages by file: a README heading can be renamed without anyone noticing."""
    pointers = []
    for path in sorted((REPO / "src").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bREADME\b(?!\.md)", line):  # README.md is an export's model card
                pointers.append(f"{path.relative_to(REPO)}:{number}")
    assert not pointers, pointers


def test_the_checks_find_what_is_broken(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `code` title\n\n[ok](#a-code-title) [gone](missing.md) `[not](a-link.md)`\n")
    assert anchors(page) == {"a-code-title"}
    assert links(page) == ["#a-code-title", "missing.md"]
