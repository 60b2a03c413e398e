"""constraints.txt: the exact versions the test suite passes with, for `make setup` to install with.

    .venv/bin/python -m tools.constraints > constraints.txt

Starts from pyproject.toml's dependencies and the extras named below, follows each requirement through
the installed packages' metadata (their own requirements, with the extras asked for and the markers of
this Python), and pins every package reached at its installed version. Packages installed for other
reasons are left out; a local version label (torch's `+cpu`) is dropped, so the pin also matches the
build another machine's index offers.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("dev",)  # what `make setup` installs: `.[dev]`


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether a requirement holds here, for a package installed with `extras` (markers say which)."""
    if requirement.marker is None:
        return True
    environment = default_environment()
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def project_requirements(pyproject: Path, extras: tuple[str, ...] = EXTRAS) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(text) for text in texts]


def pinned(requirements: list[Requirement], project: str = "peftqa") -> dict[str, str]:
    """{distribution name: installed version} of everything `requirements` reach, the project left out."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(requirement, {""}) for requirement in requirements]
    while queue:
        requirement, extras = queue.pop()
        if not _applies(requirement, extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if name == canonicalize_name(project) or key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{requirement.name} is required but not installed: install it first") from None
        found[name] = Version(distribution.version).public
        wanted = set(requirement.extras)
        queue += [(Requirement(text), wanted) for text in distribution.requires or []]
    return dict(sorted(found.items()))


def constraints_text(versions: dict[str, str]) -> str:
    header = [
        "# The exact set the test suite passes with (`make setup` installs with -c constraints.txt).",
        "# Written by `python -m tools.constraints` from the installed packages: do not edit by hand.",
    ]
    return "\n".join([*header, *(f"{name}=={version}" for name, version in versions.items())]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    sys.stdout.write(constraints_text(pinned(project_requirements(args.pyproject))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
