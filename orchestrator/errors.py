"""Errors that are the user's to fix: the CLI prints them as one line and exits non-zero."""
from __future__ import annotations

from agent.model import ModelUnavailable
from orchestrator.serving import ServingError
from sandbox.base import SandboxError
from sandbox.git import GitError


class UsageError(ValueError):
    pass


USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, GitError, ModelUnavailable, SandboxError, ServingError,
                                                 FileNotFoundError, FileExistsError, PermissionError)
