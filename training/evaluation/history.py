"""A private benchmark from a repository's own history: each past commit becomes a task.

The commit message is the task, the parent the start commit, the commit's diff of non-test files the
reference patch, and the test files it touched (with a command to run them) the check. Commits from
`since` on are held out: training data must come from before that cut-off (see `training/evaluation/holdout.py`).
"""
from __future__ import annotations

import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import git
from pydantic import BaseModel

from sandbox.errors import UserError
from training.evaluation.benchmark import TestCheck
from training.synthesis.demonstrations import without_trailers
from training.synthesis.functions import GENERATED_FILE, path_skip_reason

MAX_CHANGED_LINES = 400
MAX_FILES = 20
LOCK_FILES = {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock", "go.sum",
              "uv.lock", "Pipfile.lock", "composer.lock", "Gemfile.lock"}


class HistoryTask(BaseModel):
    id: str
    task: str
    commit: str
    """The parent: the agent starts here."""
    reference_patch: str
    tests: TestCheck | None = None
    source_commit: str
    repo: str
    committed_at: str
    """ISO 8601, UTC."""
    holdout_since: str
    """The benchmark's cut-off (ISO 8601, UTC): training data must predate it."""


class MiningReport(BaseModel):
    tasks: list[HistoryTask]
    skipped: dict[str, int]


def parse_date(text: str, option: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or a full ISO 8601 time; naive times are UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} must be a date like 2024-05-01 or 2024-05-01T12:00:00+00:00, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def is_generated(path: str) -> bool:
    name = PurePosixPath(path).name
    return name in LOCK_FILES or bool(GENERATED_FILE.search(name)) or path_skip_reason(path) == "vendored"


def is_test(path: str) -> bool:
    return path_skip_reason(path) == "test"


def test_command(files: list[str]) -> str | None:
    """How to run just these tests, for the layouts we can tell from file names alone."""
    python = [f for f in files if f.endswith(".py") and PurePosixPath(f).name != "conftest.py"]
    if python and len(python) == len([f for f in files if f.endswith(".py")]):
        return "python -m pytest -q -p no:cacheprovider " + " ".join(quote(f) for f in python)
    go_dirs = sorted({str(PurePosixPath(f).parent) for f in files if f.endswith("_test.go")})
    if go_dirs and all(f.endswith(".go") for f in files):
        return "go test " + " ".join(quote("./" + d) for d in go_dirs)
    return None


def quote(path: str) -> str:
    return shlex.quote(path)


def diff_text(repo: Path, parent: str, commit: str, files: list[str]) -> str | None:
    """The diff of `files` between the two commits, or None when it is not text (binary or not UTF-8)."""
    proc = subprocess.run(["git", "-C", str(repo), "diff", "--no-color", "--no-ext-diff", "--no-renames", parent,
                           commit, "--", *files], capture_output=True, check=True)
    if b"Binary files " in proc.stdout or b"GIT binary patch" in proc.stdout:
        return None
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None


def mine_history(repo: Path, since: datetime, until: datetime | None = None, max_tasks: int | None = None,
                 max_changed_lines: int = MAX_CHANGED_LINES) -> MiningReport:
    """Tasks from the non-merge commits on HEAD's history committed in [since, until), oldest first."""
    handle = git.Repo(repo)
    skipped: dict[str, int] = {}
    tasks: list[HistoryTask] = []

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    commits = [c for c in handle.iter_commits("HEAD") if c.committed_datetime >= since
               and (until is None or c.committed_datetime < until)]
    for commit in reversed(commits):
        if max_tasks is not None and len(tasks) >= max_tasks:
            break
        if len(commit.parents) > 1:
            skip("merge")
            continue
        if not commit.parents:
            skip("root commit")
            continue
        message = commit.message if isinstance(commit.message, str) else commit.message.decode("utf-8", "replace")
        message = without_trailers(message)
        if not message:
            skip("no message")
            continue
        stats = commit.stats
        files = sorted(stats.files)
        changed = sum(int(s["lines"]) for s in stats.files.values())
        if changed > max_changed_lines or len(files) > MAX_FILES:
            skip("huge")
            continue
        tests = [f for f in files if is_test(f)]
        code = [f for f in files if not is_test(f)]
        if not code:
            skip("tests only")
            continue
        if all(is_generated(f) for f in code):
            skip("generated only")
            continue
        parent = commit.parents[0].hexsha
        reference = diff_text(repo, parent, commit.hexsha, code)
        test_patch = diff_text(repo, parent, commit.hexsha, tests) if tests else None
        if not reference or (tests and test_patch is None):
            skip("binary or not UTF-8")
            continue
        command = test_command(tests) if tests else None
        check = TestCheck(files=tests, patch=test_patch, command=command) if command and test_patch else None
        tasks.append(HistoryTask(
            id=f"hist-{commit.hexsha[:10]}", task=message, commit=parent, reference_patch=reference, tests=check,
            source_commit=commit.hexsha, repo=str(repo),
            committed_at=commit.committed_datetime.astimezone(timezone.utc).isoformat(),
            holdout_since=since.astimezone(timezone.utc).isoformat()))
    return MiningReport(tasks=tasks, skipped=skipped)
