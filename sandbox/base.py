"""The one boundary between the agent and the machine: a `Sandbox` runs commands and touches files.

The agent never learns where the workspace lives on the host. It sees `sandbox.root` (for example
`/repo` under bubblewrap) and every path it names is resolved by the sandbox, which refuses paths that
leave the workspace.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from sandbox.errors import InfrastructureError, NightowlError

if TYPE_CHECKING:
    from sandbox.shell import ShellSession


class CommandResult(BaseModel):
    output: str
    """stdout and stderr interleaved, possibly clipped in the middle (see `clipped_bytes`)."""
    returncode: int | None
    """None when the command was stopped at its wall timeout."""
    timed_out: bool = False
    duration_s: float = 0.0
    clipped_bytes: int = 0
    """How many bytes of output were dropped from the middle because the output was huge; `output` then holds
    the head, one marker line and the tail (`head_and_tail`)."""
    clipped_chars: int = 0
    """Characters in the dropped bytes."""
    clipped_lines: int = 0
    """Newlines in the dropped bytes."""
    head_chars: int = 0
    tail_chars: int = 0
    output_bytes: int = 0
    """Size of the whole output, read back or not."""
    shell_restarted: str | None = None
    """Persistent shells only: why the session was started afresh during this command (`exit`: the command ended
    the shell, with `returncode`; `timeout`: it could not be interrupted and was killed with the shell; `died`:
    the shell or its sandbox ended unexpectedly). None when the session carried on."""

    def head_and_tail(self) -> tuple[str, str]:
        """The output before and after the dropped middle (all of it and "" when nothing was dropped)."""
        if not self.clipped_bytes:
            return self.output, ""
        return self.output[:self.head_chars], self.output[len(self.output) - self.tail_chars:]


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

    def execute(self, command: str, timeout: float) -> CommandResult:
        """Run `command` in a fresh shell in `root`; nothing it started outlives it."""
        ...

    def open_shell(self) -> "ShellSession":
        """A persistent bash session (sandbox/shell.py): state carries over between its commands, and what it
        started runs until the session is closed (`close` closes any still open)."""
        ...

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
