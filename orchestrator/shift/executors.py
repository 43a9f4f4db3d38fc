"""How one attempt runs: in this process (threads; the default) or as a Ray task (`ray_executor.py`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from agent.run import RunOutcome, RunRequest, run_task
from orchestrator.errors import UsageError
from sandbox.workspace_pool import WorkspacePool

Progress = Callable[[int, int], None]
"""(steps so far, tokens so far)"""


class RayPlacement(BaseModel):
    """What each attempt asks a Ray cluster for, so the scheduler spreads attempts over the nodes."""
    cpus_per_agent: float = Field(default=1.0, gt=0)
    memory_mb_per_agent: int | None = Field(default=None, gt=0)
    """None: the sandbox's memory limit per command (what one agent's commands may use at once)."""


class Executor(Protocol):
    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Attempts in this process's worker threads, each worker reusing a workspace from one pool."""
    def __init__(self, workdir: Path | None = None):
        self.workspaces = WorkspacePool(workdir) if workdir is not None else None

    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome:
        return run_task(request, should_stop=should_stop,
                        progress=lambda t: progress(len(t.steps), t.usage.total_tokens), workspaces=self.workspaces)

    def close(self) -> None:
        if self.workspaces is not None:
            self.workspaces.close()


def make_executor(kind: str, ray_address: str | None = None, workers: int = 1, workdir: Path | None = None,
                  placement: RayPlacement | None = None, readable: list[Path] | None = None,
                  writable: list[Path] | None = None) -> Executor:
    """`readable`/`writable`: what every Ray node must see (the repository, the output directory)."""
    if kind == "local":
        return LocalExecutor(workdir)
    if kind == "ray":
        from orchestrator.shift.ray_executor import RayExecutor
        return RayExecutor(ray_address, workers, placement, readable, writable)
    raise UsageError(f"--executor must be local or ray, not {kind!r}")
