"""A benchmark task's test check, run in the sandbox: the touched tests at the start commit, with a patch or without."""
from __future__ import annotations

import tempfile
from pathlib import Path

from sandbox.git import GitError, git
from sandbox.select import open_sandbox
from sandbox.workspace import create_workspace
from training.evaluation.benchmark import TestCheck


def tests_pass(repo: Path, commit: str, check: TestCheck, patch: str, sandbox: str, timeout_s: float) -> bool:
    """Applies the check's test files and `patch` (possibly empty) to a fresh checkout, then runs the command.

    A patch that does not apply fails the check (the change cannot be what made the tests pass)."""
    with tempfile.TemporaryDirectory(prefix="nightowl-check-") as tmp:
        ws = create_workspace(repo, commit, Path(tmp) / "ws")
        for part in (check.patch, patch):
            if not part.strip():
                continue
            try:
                git(ws.path, "apply", "--whitespace=nowarn", "-", input=part.encode())
            except GitError:
                return False
        box = open_sandbox(sandbox, ws)  # type: ignore[arg-type]
        try:
            result = box.execute(check.command, timeout_s)
        finally:
            box.close()
        return result.returncode == 0
