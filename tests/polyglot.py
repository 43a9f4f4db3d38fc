"""The checked-in multi-language fixture repository (tests/training/data/polyglot), built as a real git repo."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import git

DATA = Path(__file__).parent / "training" / "data" / "polyglot"


def make_polyglot_repo(repo: Path) -> Path:
    shutil.copytree(DATA, repo)
    (repo / "dot-gitignore").rename(repo / ".gitignore")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    git(repo, "add", "-A")
    git(repo, "add", "-f", "ignored/local_settings.py")  # tracked, yet matched by .gitignore: still skipped
    git(repo, "commit", "-qm", "polyglot fixture")
    return repo
