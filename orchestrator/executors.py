"""How one attempt runs: in this process (threads; the default) or as a Ray task (`ray_executor.py`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.run import RunOutcome, RunRequest, run_task
from orchestrator.errors import UsageError

Progress = Callable[[int, int], None]
"""(steps so far, tokens so far)"""


class Executor(Protocol):
    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome: ...

    def close(self) -> None: ...


class LocalExecutor:
    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome:
        return run_task(request, should_stop=should_stop,
                        progress=lambda t: progress(len(t.steps), t.usage.total_tokens))

    def close(self) -> None:
        pass


def make_executor(kind: str, ray_address: str | None = None, workers: int = 1) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        from orchestrator.ray_executor import RayExecutor
        return RayExecutor(ray_address, workers)
    raise UsageError(f"--executor must be local or ray, not {kind!r}")
