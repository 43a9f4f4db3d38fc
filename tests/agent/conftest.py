from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import git

BUGGY = '''def add(a, b):
    """Return the sum of a and b."""
    return a - b
'''
TEST = '''from calc import add


def test_add():
    assert add(2, 3) == 5
'''


def snapshot(repo: Path) -> dict[str, str]:
    """Everything a user could notice: every file's hash (including .git), HEAD, status, stash."""
    state = {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(repo.rglob("*")) if p.is_file() and "refs/heads/nightowl" not in str(p)
             and p.name not in ("packed-refs",) and "logs" not in p.parts and "objects" not in p.parts}
    state["HEAD"] = git(repo, "rev-parse", "HEAD")
    state["status"] = git(repo, "status", "--porcelain", "--untracked-files=all")
    state["stash"] = git(repo, "stash", "list")
    return state


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(TEST)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    # Uncommitted user work that must survive untouched.
    (repo / "notes.txt").write_text("my uncommitted notes\n")
    (repo / "calc.py").write_text(BUGGY + "\n# local edit in progress\n")
    return repo
