"""Choosing a sandbox backend by name (the backends themselves are registered in backends.py)."""
from __future__ import annotations

import os

from sandbox.backends import (
    BACKENDS,
    DEFAULT_ISOLATING,
    ISOLATING_SANDBOXES,
    Backend,
    SandboxKind,
    backend,
    isolates,
    kinds_text,
)
from sandbox.base import Sandbox
from sandbox.errors import UserError
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.workspace import Workspace

__all__ = ["ISOLATING_SANDBOXES", "INSTALL_HINT", "NoIsolationAvailable", "SandboxKind", "ensure_isolation",
           "install_hint", "open_sandbox", "workspace_owner"]

UNISOLATED_HINT = "run without isolation with --dangerously-no-sandbox"


def install_hint(found: Backend) -> str:
    """How to make an isolating backend work here, or do without it."""
    return f"{found.install_hint}, or {UNISOLATED_HINT}"


INSTALL_HINT = install_hint(BACKENDS[DEFAULT_ISOLATING])


class NoIsolationAvailable(UserError):
    """No isolating backend works here: the user installs one or opts out loudly."""


def open_sandbox(kind: SandboxKind, workspace: Workspace, limits: ResourceLimits | None = None,
                 policy: Policy | None = None) -> Sandbox:
    """`auto` never falls back to the unisolated backend: that needs an explicit `local`."""
    found = backend(kind)
    if found is None:
        raise UserError(f"unknown sandbox kind {kind!r} ({kinds_text((*ISOLATING_SANDBOXES, *unisolated()))})")
    ensure_isolation(kind, policy)
    return found.open(workspace, limits, policy or Policy())


def ensure_isolation(kind: SandboxKind, policy: Policy | None = None) -> None:
    """Raises NoIsolationAvailable when an isolating backend cannot start here (checked before anything slow)."""
    found = backend(kind)
    if found is None or not found.isolates:
        return
    problem = found.problem(policy or Policy())
    if problem is not None:
        raise NoIsolationAvailable(f"no isolating sandbox backend works on this machine ({problem}): "
                                   f"{install_hint(found)}")


def workspace_owner(kind: SandboxKind, policy: Policy | None = None) -> tuple[int, int] | None:
    """Who the isolating sandbox runs commands as, when nightowl runs as root (else the files stay the user's)."""
    if not isolates(kind) or os.geteuid() != 0:
        return None
    p = policy or Policy()
    return p.run_as_uid, p.run_as_gid


def unisolated() -> tuple[str, ...]:
    return tuple(name for name, found in BACKENDS.items() if not found.isolates)
