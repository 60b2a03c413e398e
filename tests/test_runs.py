import shutil
import subprocess
from pathlib import Path

import pytest

from peftqa import runs
from peftqa.runs import git_commit

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *arguments: str) -> str:
    identity = ["-c", "user.email=test@example.com", "-c", "user.name=test", "-c", "commit.gpgsign=false"]
    completed = subprocess.run(
        ["git", *identity, *arguments], cwd=repo, capture_output=True, text=True, timeout=30, check=True
    )
    return completed.stdout.strip()


@needs_git
def test_git_commit_only_when_the_package_itself_is_tracked(tmp_path):
    repo = tmp_path / "someone-elses-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("their project\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-q", "-m", "their commit")
    # A copy of the package inside their repository, not tracked by it (like a .venv install).
    package = repo / ".venv" / "site-packages" / "peftqa"
    package.mkdir(parents=True)
    shutil.copy(runs.__file__, package / "runs.py")
    assert git_commit(package) is None
    _git(repo, "add", ".venv/site-packages/peftqa/runs.py")
    _git(repo, "commit", "-q", "-m", "track the package")
    assert git_commit(package) == _git(repo, "rev-parse", "HEAD")


def test_git_commit_is_none_outside_any_repository(tmp_path):
    assert git_commit(tmp_path) is None  # no repository, or one that tracks nothing here
    assert git_commit(tmp_path / "missing") is None
