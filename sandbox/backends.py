"""Every sandbox backend, registered once: what opens it, whether it isolates, how to make it work here.

Adding a backend is one `Backend(...)` in `BACKENDS` and its name in `SandboxKind`; choosing one (select.py),
the settings' allowed kinds, the environment set-up and `nightowl doctor` all read this table.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from sandbox.base import Sandbox
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.workspace import Workspace

SandboxKind = Literal["auto", "bwrap", "local"]
AUTO = "auto"
"""Not a backend of its own: the default isolating one (`DEFAULT_ISOLATING`)."""


@dataclass(frozen=True)
class Backend:
    name: str
    label: str
    """What `nightowl doctor` calls its check."""
    isolates: bool
    """Whether commands are kept from the host (files, network, processes); the others need the loud flag."""
    open: Callable[[Workspace, ResourceLimits | None, Policy], Sandbox]
    problem: Callable[[Policy], str | None]
    """Why the backend cannot start on this machine, or None when it can (checked before anything slow)."""
    located: Callable[[], str]
    """Where it was found, for the doctor's report."""
    install_hint: str


def _open_bwrap(workspace: Workspace, limits: ResourceLimits | None, policy: Policy) -> Sandbox:
    from sandbox.bwrap import BubblewrapSandbox
    return BubblewrapSandbox(workspace, limits, policy)


def _bwrap_problem(policy: Policy) -> str | None:
    from sandbox.bwrap import bwrap_works
    return bwrap_works(policy.run_as_uid, policy.run_as_gid)


def _bwrap_location() -> str:
    from sandbox.bwrap import find_bwrap
    return str(find_bwrap())


def _open_local(workspace: Workspace, limits: ResourceLimits | None, policy: Policy) -> Sandbox:
    from sandbox.local import LocalSandbox
    return LocalSandbox(workspace, limits)


BACKENDS: dict[str, Backend] = {
    "bwrap": Backend(name="bwrap", label="bubblewrap", isolates=True, open=_open_bwrap, problem=_bwrap_problem,
                     located=_bwrap_location, install_hint="install bubblewrap (`apt-get install bubblewrap`)"),
    "local": Backend(name="local", label="local", isolates=False, open=_open_local, problem=lambda policy: None,
                     located=lambda: "no isolation", install_hint=""),
}
DEFAULT_ISOLATING = "bwrap"
ISOLATING_SANDBOXES: tuple[str, ...] = (AUTO, *(name for name, b in BACKENDS.items() if b.isolates))
"""The kinds a setting may name; an unisolated backend is reached only through --dangerously-no-sandbox."""

if set(get_args(SandboxKind)) != {AUTO, *BACKENDS}:
    raise ImportError(f"SandboxKind {get_args(SandboxKind)} must name `auto` and every backend in BACKENDS")


def kinds_text(kinds: tuple[str, ...], last: str = "or") -> str:
    """('auto', 'bwrap', 'local') -> 'auto, bwrap or local'."""
    return ", ".join(kinds[:-1]) + f" {last} {kinds[-1]}" if len(kinds) > 1 else "".join(kinds)


def backend(kind: str) -> Backend | None:
    """The backend a kind names (`auto` is the default isolating one); None for an unknown kind."""
    return BACKENDS.get(DEFAULT_ISOLATING if kind == AUTO else kind)


def isolates(kind: str) -> bool:
    found = backend(kind)
    return found is not None and found.isolates
