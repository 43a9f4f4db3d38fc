"""The project's exception hierarchy (defined in sandbox/errors.py, the bottom layer) and the CLI's flag errors."""
from __future__ import annotations

from sandbox.errors import InfrastructureError, NightowlError, TaskError, UserError


class UsageError(UserError, ValueError):
    """A bad command-line flag or input file (still a ValueError for code that validates with pydantic)."""


class NothingProduced(NightowlError):
    """A stage ran to its end and produced nothing (0 samples, 0 rows): the run failed, and says why."""
    exit_code = 1


__all__ = ["InfrastructureError", "NightowlError", "NothingProduced", "TaskError", "UsageError", "UserError"]
