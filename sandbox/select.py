"""Choosing a sandbox backend by name."""
from __future__ import annotations

import os
from typing import Literal

from sandbox.base import Sandbox
from sandbox.errors import UserError
from sandbox.limits import ResourceLimits
from sandbox.local import LocalSandbox
from sandbox.policy import Policy
from sandbox.workspace import Workspace

SandboxKind = Literal["auto", "bwrap", "local"]
INSTALL_HINT = ("install bubblewrap (`apt-get install bubblewrap`), or run without isolation with "
                "--dangerously-no-sandbox")


class NoIsolationAvailable(UserError):
    """No isolating backend works here: the user installs one or opts out loudly."""


def open_sandbox(kind: SandboxKind, workspace: Workspace, limits: ResourceLimits | None = None,
                 policy: Policy | None = None) -> Sandbox:
    """`auto` never falls back to the unisolated backend: that needs an explicit `local`."""
    if kind == "local":
        return LocalSandbox(workspace, limits)
    if kind not in ("auto", "bwrap"):
        raise UserError(f"unknown sandbox kind {kind!r} (auto, bwrap or local)")
    from sandbox.bwrap import BubblewrapSandbox
    ensure_isolation(kind, policy)
    return BubblewrapSandbox(workspace, limits, policy)


def ensure_isolation(kind: SandboxKind, policy: Policy | None = None) -> None:
    """Raises NoIsolationAvailable when the bubblewrap backend cannot start here (checked before anything slow)."""
    if kind not in ("auto", "bwrap"):
        return
    from sandbox.bwrap import bwrap_works
    p = policy or Policy()
    problem = bwrap_works(p.run_as_uid, p.run_as_gid)
    if problem is not None:
        raise NoIsolationAvailable(f"no isolating sandbox backend works on this machine ({problem}): {INSTALL_HINT}")


def workspace_owner(kind: SandboxKind, policy: Policy | None = None) -> tuple[int, int] | None:
    """Who the isolating sandbox runs commands as, when nightowl runs as root (else the files stay the user's)."""
    if kind not in ("auto", "bwrap") or os.geteuid() != 0:
        return None
    p = policy or Policy()
    return p.run_as_uid, p.run_as_gid
