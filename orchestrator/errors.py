"""The project's exception hierarchy (defined in sandbox/errors.py, the bottom layer) and the CLI's flag errors."""
from __future__ import annotations

from sandbox.errors import InfrastructureError, NightowlError, TaskError, UserError


class UsageError(UserError, ValueError):
    """A bad command-line flag or input file (still a ValueError for code that validates with pydantic)."""


__all__ = ["InfrastructureError", "NightowlError", "TaskError", "UsageError", "UserError"]
