"""The project's exception hierarchy (defined in sandbox/errors.py, the bottom layer) and the CLI's flag errors."""
from __future__ import annotations

from sandbox.errors import InfrastructureError, NightowlError, TaskError, UserError

EXIT_STOPPED = 3
"""A shift (or a stage run as one) stopped before every task finished (deadline, budget, signal): re-run to resume."""

EXIT_BUG = 70
"""sysexits' EX_SOFTWARE: an internal error, as opposed to 2 for bad input."""


class UsageError(UserError, ValueError):
    """A bad command-line flag or input file (still a ValueError for code that validates with pydantic)."""


class NothingProduced(NightowlError):
    """A stage ran to its end and produced nothing (0 samples, 0 rows): the run failed, and says why."""
    exit_code = 1


__all__ = ["EXIT_BUG", "EXIT_STOPPED", "InfrastructureError", "NightowlError", "NothingProduced", "TaskError",
           "UsageError", "UserError"]
