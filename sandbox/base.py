"""The one boundary between the agent and the machine: a `Sandbox` runs commands and touches files.

The agent never learns where the workspace lives on the host. It sees `sandbox.root` (for example
`/repo` under bubblewrap) and every path it names is resolved by the sandbox, which refuses paths that
leave the workspace.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from sandbox.errors import InfrastructureError, NightowlError


class CommandResult(BaseModel):
    output: str
    """stdout and stderr interleaved, possibly clipped in the middle (see `clipped_bytes`)."""
    returncode: int | None
    """None when the command was killed at its wall timeout."""
    timed_out: bool = False
    duration_s: float = 0.0
    clipped_bytes: int = 0
    """How many bytes of output were dropped from the middle because the output was huge."""


class SandboxError(InfrastructureError):
    """The sandbox itself failed (not the command it ran)."""


class RefusedPath(NightowlError):
    """A file request of the agent that the sandbox refuses; the editor turns it into an observation."""


class PathOutsideWorkspace(RefusedPath):
    """A path given by the agent resolves outside the workspace (directly or through a symlink)."""


class ProtectedPath(RefusedPath):
    """A path inside the workspace that the agent may read but never write (git hooks, git config)."""


class NotARegularFile(RefusedPath):
    """A FIFO, socket or device: opening one host-side could block a worker for ever."""


class FileTooLarge(RefusedPath):
    """Bigger than the editor reads into memory."""


@runtime_checkable
class Sandbox(Protocol):
    name: str
    root: str
    """The repository root as commands and tool paths see it."""

    def execute(self, command: str, timeout: float) -> CommandResult: ...

    def host_path(self, path: str) -> Path:
        """Map a path the agent gave (absolute inside `root`, or relative to it) to the host, refusing escapes."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def diff(self) -> bytes:
        """The patch of the workspace against its base commit, new files included, byte for byte."""
        ...

    def self_check(self) -> dict[str, Any]:
        """Which protections are active, measured from inside (sandbox/selfcheck.py), recorded in the trajectory."""
        ...

    def close(self) -> None: ...
