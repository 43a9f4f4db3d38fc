"""nightowl's one exception hierarchy; it lives here because every other package may import sandbox/.

Every error raised on purpose is a `NightowlError` of one of three kinds, and each kind has one handling:
- `UserError`: bad input or set-up the user must fix; the CLI prints one line and exits 2; a shift stops.
- `TaskError` (a `UserError`): this one task cannot run as given; in a shift the attempt counts and the
  shift goes on.
- `InfrastructureError`: a server, the machine or a sandbox failed; a shift retries it later.
Anything else is a bug in nightowl: its traceback goes to the log and the user gets a short message.
"""
from __future__ import annotations


class NightowlError(Exception):
    """Base of every error nightowl raises on purpose."""


class UserError(NightowlError):
    """Bad input or set-up the user has to fix (a flag, a file, a missing tool, a refused API key)."""


class TaskError(UserError):
    """This task cannot run as given (an unknown commit, an empty task, a broken repository config)."""


class InfrastructureError(NightowlError):
    """A server, the machine or a sandbox failed: not the task's fault, worth retrying later."""
