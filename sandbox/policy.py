"""What a sandbox allows: writable, hidden and protected paths, environment, network, limits.

Defaults are safe. A repository's own configuration can only loosen what the user explicitly allowed
(`Policy.loosen`), e.g. network during a dependency-install phase.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from sandbox.environment import ALLOWED_VARIABLES
from sandbox.errors import UserError
from sandbox.files import PROTECTED_RELATIVE_PATHS
from sandbox.limits import ResourceLimits

HIDDEN_SYSTEM_PATHS = ("/root", "/home", "/run", "/etc/shadow", "/etc/gshadow", "/etc/ssh",
                       "/etc/sudoers", "/etc/sudoers.d", "/var/spool/cron", "/var/lib/docker")
HIDDEN_HOME_ENTRIES = (".ssh", ".aws", ".netrc", ".npmrc", ".pypirc", ".docker", ".kube", ".config/gh",
                       ".gnupg", ".git-credentials", ".gitconfig", ".config/git", ".azure", ".config/gcloud",
                       ".cargo/credentials", ".cargo/credentials.toml", ".pgpass", ".bash_history",
                       ".huggingface", ".cache/huggingface/token", ".m2/settings.xml")
LOOSENABLE = frozenset({"network", "writable_paths", "env_allow", "limits"})
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
"""What the toolchain needs from the host, read-only; every other top-level directory (/home, /root, /srv,
/work, /var, /mnt, /media, ...) is absent inside unless mounted on purpose (`Policy.mounts`)."""


class Mount(BaseModel):
    source: str
    """A host directory or file."""
    target: str | None = None
    """Where it appears inside; default: the same path."""
    writable: bool = False

    @property
    def inside(self) -> str:
        return self.target or self.source


def invoking_user_secret_paths() -> list[str]:
    """Secret files of whoever runs the orchestrator, plus its runtime dir (sockets: ssh-agent, dbus)."""
    paths = []
    home = os.environ.get("HOME")
    if home:
        paths += [str(Path(home) / entry) for entry in HIDDEN_HOME_ENTRIES]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(runtime)
    return paths


class Policy(BaseModel):
    network: bool = False
    writable_paths: list[str] = Field(default_factory=list)
    """Host paths bound read-write in addition to the workspace (empty by default)."""
    system_paths: tuple[str, ...] = SYSTEM_PATHS
    mounts: list[Mount] = Field(default_factory=list)
    """More host paths, read-only unless marked: toolchains (pyenv, nvm, rustup) and the prepared environment."""
    path_prepend: list[str] = Field(default_factory=list)
    """Directories put in front of PATH inside (a toolchain's or the environment's `bin`)."""
    hidden_paths: list[str] = Field(default_factory=lambda: [*HIDDEN_SYSTEM_PATHS, *invoking_user_secret_paths()])
    protected_paths: tuple[str, ...] = PROTECTED_RELATIVE_PATHS
    """Relative to the workspace: readable, never writable (from inside or by the editor)."""
    env_allow: tuple[str, ...] = ALLOWED_VARIABLES
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    run_as_uid: int = 65534
    """Unprivileged host uid sandboxed commands run as when the orchestrator is root."""
    run_as_gid: int = 65534
    inside_uid: int = 1000
    tmp_size_mb: int = Field(default=512, gt=0)
    shm_size_mb: int = Field(default=64, gt=0)

    def loosen(self, allowed: set[str], requested: dict) -> Policy:
        """Apply only the requested fields the user allowed; everything else keeps its safe value."""
        unknown = set(requested) - LOOSENABLE
        if unknown:
            raise UserError(f"these sandbox settings cannot be changed by a repository: {sorted(unknown)}")
        changes = {key: value for key, value in requested.items() if key in allowed}
        if "limits" in changes:
            changes["limits"] = self.limits.model_copy(update=changes["limits"])
        if "env_allow" in changes:
            from sandbox.environment import is_secret_name
            changes["env_allow"] = tuple(self.env_allow) + tuple(
                n for n in changes["env_allow"] if not is_secret_name(n))
        return self.model_copy(update=changes)
