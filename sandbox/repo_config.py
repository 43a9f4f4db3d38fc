"""A repository's own sandbox declarations: the `[sandbox]` and `[environment]` tables of `nightowl.toml`.

Read from the task's commit (`git show COMMIT:nightowl.toml`), never from the agent's workspace, so an
agent cannot change what its own sandbox mounts. Other tables of the file (nightowl's settings) are not
this loader's business and are ignored here.

    [sandbox]
    toolchains = ["/root/.pyenv"]                  # host paths mounted read-only at the same path
    path = ["/env/venv/bin", "/root/.pyenv/shims"] # put in front of PATH inside

    [environment]
    setup = "python3 -m venv /env/venv && /env/venv/bin/pip install -e '.[test]'"
    timeout_s = 1800
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.errors import TaskError
from sandbox.git import git_bytes

CONFIG_FILE = "nightowl.toml"
ENV_INSIDE = "/env"


class RepoConfigError(TaskError):
    pass


NIGHTOWL_SANDBOX_SETTINGS = frozenset({"kind", "network", "writable_paths", "pass_env", "tmp_size_mb",
                                       "shm_size_mb", "limits"})
"""Keys of the same [sandbox] table that are nightowl's settings (orchestrator/settings.py validates them;
a test keeps the two lists equal): not this loader's business."""


class SandboxDeclarations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    toolchains: list[str] = Field(default_factory=list)
    path: list[str] = Field(default_factory=list)


class EnvironmentDeclarations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    setup: str | None = None
    """A bash command run once per repository and commit, in /repo, with the network on, that installs
    what the tests need into /env (mounted read-only into every agent sandbox afterwards)."""
    timeout_s: float = Field(default=1800, gt=0)


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sandbox: SandboxDeclarations = Field(default_factory=SandboxDeclarations)
    environment: EnvironmentDeclarations = Field(default_factory=EnvironmentDeclarations)


def parse_repo_config(text: str, where: str) -> RepoConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RepoConfigError(f"{where}: not valid TOML ({e})") from None
    if isinstance(data.get("sandbox"), dict):
        data["sandbox"] = {k: v for k, v in data["sandbox"].items() if k not in NIGHTOWL_SANDBOX_SETTINGS}
    try:
        config = RepoConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise RepoConfigError(f"{where}: {field}: {first['msg']}") from None
    for path in config.sandbox.toolchains:
        if not os.path.isabs(path) or os.path.realpath(path) == "/":
            raise RepoConfigError(f"{where}: sandbox.toolchains: {path!r} must be an absolute path other than /")
        if not os.path.exists(path):
            raise RepoConfigError(f"{where}: sandbox.toolchains: {path} does not exist on this machine")
    return config


def load_repo_config(repo: Path, commit: str) -> RepoConfig:
    """The declarations in `nightowl.toml` at `commit` (defaults when the file is not there)."""
    blob = git_bytes(repo, "show", f"{commit}:{CONFIG_FILE}", check=False)
    if not blob:
        return RepoConfig()
    return parse_repo_config(blob.decode("utf-8", errors="replace"), f"{CONFIG_FILE} at {commit[:12]}")
