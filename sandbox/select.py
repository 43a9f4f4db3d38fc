"""Choosing a sandbox backend by name."""
from __future__ import annotations

from typing import Literal

from sandbox.base import Sandbox, SandboxError
from sandbox.limits import ResourceLimits
from sandbox.local import LocalSandbox
from sandbox.workspace import Workspace

SandboxKind = Literal["auto", "local"]


class NoIsolationAvailable(SandboxError):
    pass


def open_sandbox(kind: SandboxKind, workspace: Workspace, limits: ResourceLimits | None = None) -> Sandbox:
    if kind == "local":
        return LocalSandbox(workspace, limits)
    raise NoIsolationAvailable(
        "no isolating sandbox backend works on this machine: install bubblewrap (`apt-get install bubblewrap`), "
        "or run without isolation with --dangerously-no-sandbox")
