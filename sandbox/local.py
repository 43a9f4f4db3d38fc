"""The unisolated backend: a process group, rlimits and a scrubbed environment, nothing more.

It does not stop a command from reading or writing anything the orchestrator's user can. It exists for
development and for machines where nothing isolating works, and is only chosen explicitly.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.base import CommandResult, SandboxError
from sandbox.environment import sandbox_environment
from sandbox.files import PROTECTED_RELATIVE_PATHS, WorkspaceBackedFiles, WorkspaceFiles
from sandbox.limits import ResourceLimits, apply_rlimits
from sandbox.policy import invoking_user_secret_paths
from sandbox.process import run_process
from sandbox.selfcheck import self_check
from sandbox.shell import ShellSession
from sandbox.shims import make_support_dir
from sandbox.workspace import Workspace


class LocalSandbox(WorkspaceBackedFiles):
    name = "local"

    def __init__(self, workspace: Workspace, limits: ResourceLimits | None = None):
        self.workspace = workspace
        self.limits = limits or ResourceLimits()
        self.root = str(workspace.path)
        self.files = WorkspaceFiles(workspace.path, self.root)
        self._home = tempfile.TemporaryDirectory(prefix="nightowl-home-")
        self._support = make_support_dir(env_dir=None)
        self.env = self._environment(os.environ)
        self._sessions: list[ShellSession] = []
        self._closed = False

    def _environment(self, host: Mapping[str, str]) -> dict[str, str]:
        env = sandbox_environment(home=self._home.name, host=host)
        env["PATH"] = f"{self._support / 'bin'}:{env['PATH']}"
        return env

    def execute(self, command: str, timeout: float, launcher_env: dict[str, str] | None = None) -> CommandResult:
        """`launcher_env`: variables added to the host environment the command's is scrubbed from (a canary)."""
        env = self.env if launcher_env is None else self._environment({**os.environ, **launcher_env})
        return run_process([self._bash(env), "-c", command], cwd=self.root, env=env, timeout=timeout,
                           preexec=lambda: apply_rlimits(self.limits))

    def open_shell(self) -> ShellSession:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        session = ShellSession([], cwd=self.root, env=self.env, lib=str(self._support / "lib"),
                               bash=self._bash(self.env), preexec=lambda: apply_rlimits(self.limits),
                               on_close=self._sessions.remove)
        self._sessions.append(session)
        return session

    @staticmethod
    def _bash(env: Mapping[str, str]) -> str:
        return shutil.which("bash", path=env.get("PATH")) or "/bin/bash"

    def self_check(self) -> dict[str, Any]:
        return self_check(lambda command, env: self.execute(command, timeout=30, launcher_env=env),
                          backend=self.name, root=self.root, workspace=Path(self.root),
                          secret_paths=invoking_user_secret_paths(), protected=list(PROTECTED_RELATIVE_PATHS))

    def close(self) -> None:
        for session in list(self._sessions):
            session.close()
        self._closed = True
        self._home.cleanup()
        shutil.rmtree(self._support, ignore_errors=True)
