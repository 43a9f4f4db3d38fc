"""What tests in every folder share: the `nightowl` command line in a subprocess (or in this process, where a test
patches the code it runs) and `git`."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = ("-c", "user.name=nightowl-tests", "-c", "user.email=tests@example.com")
"""For commands that record an author (commit, stash) in repositories that set none: git(repo, *IDENTITY, ...)."""


def nightowl(*args: object, cwd: Path | None = ROOT, timeout: float = 300,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`nightowl ARGS` as a user runs it (this interpreter, from the checkout's root unless `cwd`), its output as
    text; `env` is added to this process's environment. Never raises on a failing command: tests read returncode."""
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env is not None else None)


def nightowl_in_process(*args: object) -> Any:
    """`nightowl ARGS` in this process (typer's CliRunner): for tests that monkeypatch what the command calls.
    The result's `output` holds stdout and stderr."""
    from typer.testing import CliRunner

    from orchestrator.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def git(repo: Path, *args: str, input: str | bytes | None = None, env: Mapping[str, str] | None = None,
        binary: bool = False) -> Any:
    """`git -C repo ARGS`'s stdout (bytes when `binary`); raises CalledProcessError when git fails."""
    return subprocess.run(["git", "-C", str(repo), *args], input=input, check=True, capture_output=True,
                          text=not binary, env={**os.environ, **env} if env is not None else None).stdout
