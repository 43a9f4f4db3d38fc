"""The unisolated backend: a process group, rlimits and a scrubbed environment, nothing more.

It does not stop a command from reading or writing anything the orchestrator's user can. It exists for
development and for machines where nothing isolating works, and is only chosen explicitly.
"""
from __future__ import annotations

import tempfile

from sandbox.base import CommandResult
from sandbox.environment import sandbox_environment
from sandbox.files import WorkspaceBackedFiles, WorkspaceFiles
from sandbox.limits import ResourceLimits, apply_rlimits
from sandbox.process import run_process
from sandbox.workspace import Workspace


class LocalSandbox(WorkspaceBackedFiles):
    name = "local"

    def __init__(self, workspace: Workspace, limits: ResourceLimits | None = None):
        self.workspace = workspace
        self.limits = limits or ResourceLimits()
        self.root = str(workspace.path)
        self.files = WorkspaceFiles(workspace.path, self.root)
        self._home = tempfile.TemporaryDirectory(prefix="nightowl-home-")
        self.env = sandbox_environment(home=self._home.name)

    def execute(self, command: str, timeout: float) -> CommandResult:
        return run_process(["bash", "-c", command], cwd=self.root, env=self.env, timeout=timeout,
                           preexec=lambda: apply_rlimits(self.limits))

    def self_check(self) -> dict[str, bool | str]:
        return {"backend": self.name, "isolated": False, "network_blocked": False, "secrets_scrubbed": True,
                "process_group_kill": True, "rlimits": True}

    def close(self) -> None:
        self._home.cleanup()
