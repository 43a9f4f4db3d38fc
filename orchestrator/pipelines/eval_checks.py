"""A benchmark task's test check, run in the sandbox: the touched tests at the start commit, with a patch or without.

The check runs where the agent ran: with the toolchains and the prepared environment the repository's
`nightowl.toml` declares at that commit (its test runner and dependencies live there, not on the host)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from sandbox.git import GitError, git
from sandbox.repo_config import load_repo_config
from sandbox.select import open_sandbox
from sandbox.setup_env import environment_policy, prepare_environment
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
        config = load_repo_config(repo, commit)
        policy = environment_policy(prepare_environment(repo, commit, config, sandbox), config)
        box = open_sandbox(sandbox, ws, policy=policy)  # type: ignore[arg-type]
        try:
            result = box.execute(check.command, timeout_s)
        finally:
            box.close()
        return result.returncode == 0
