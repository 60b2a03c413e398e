"""tools/constraints and constraints.txt: every requirement of the package and its dev extra is pinned
there, exactly, with torch at the tested 2.13.0."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import constraints

CONSTRAINTS = constraints.ROOT / "constraints.txt"


def _pins() -> dict[str, str]:
    lines = [line for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    for line in lines:
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9A-Za-z.]*", line), line
    return dict(line.split("==") for line in lines)


def test_every_requirement_is_pinned_and_torch_is_the_tested_one():
    pins = _pins()
    for requirement in constraints.project_requirements(constraints.ROOT / "pyproject.toml"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: run python -m tools.constraints"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
    assert pins["torch"] == "2.13.0"
    assert "peftqa" not in pins


def test_requirements_are_followed_through_their_extras():
    versions = constraints.pinned([Requirement("psycopg[binary]>=3.1")])
    assert "psycopg" in versions and "psycopg-binary" in versions
    assert "psycopg-binary" not in constraints.pinned([Requirement("psycopg>=3.1")])


def test_the_file_says_how_it_was_made():
    text = constraints.constraints_text({"a": "1.0", "b": "2.0"})
    assert "python -m tools.constraints" in text
    assert text.splitlines()[-2:] == ["a==1.0", "b==2.0"]
