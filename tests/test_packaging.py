"""The distribution `python -m build` makes: the wheel holds every module and data file of the package
and runs on its own.

The wheel is installed with --no-deps into an empty folder and run from there with only that folder on
PYTHONPATH (this environment's site-packages provide the dependencies): a module or template the
wheel lacks fails here, where an editable install or the source tree would have hidden it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "peftqa"

# Run from the installed folder alone: where peftqa was imported from, then two commands.
_RUN_INSTALLED = """
import sys
from pathlib import Path

import peftqa
from peftqa.cli.commands import main

assert Path(peftqa.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), peftqa.__file__
assert main(["methods"]) == 0
try:
    main(["serve", "--help"])
except SystemExit as exited:
    assert exited.code == 0, exited.code
"""


def _package_files() -> set[str]:
    """Every file of the package in the source tree, as the wheel names it (peftqa/...)."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def _build_wheel(tmp_path: Path) -> Path:
    """sdist then a wheel from it, built from a copy so the checkout gets no build/ or egg-info."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = sorted(dist.glob("peftqa-*.whl"))
    assert len(wheels) == 1 and sorted(dist.glob("peftqa-*.tar.gz")), sorted(dist.iterdir())
    return wheels[0]


def test_the_wheel_holds_every_file_and_runs_alone(tmp_path):
    wheel = _build_wheel(tmp_path)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"peftqa-{project['version']}.dist-info"
        meta = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    missing = sorted(_package_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "License-Expression: MIT" in meta
    for requirement in project["dependencies"]:  # ranges, as pyproject states them
        name = requirement.split(">")[0].split("<")[0].split("=")[0]
        assert any(line.startswith(f"Requires-Dist: {name}") for line in meta.splitlines()), requirement
    assert "peftqa = peftqa.cli:main" in entry_points

    target = tmp_path / "installed"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    ran = subprocess.run(
        [sys.executable, "-c", _RUN_INSTALLED, str(target)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "lora" in ran.stdout and "usage: peftqa serve" in ran.stdout
