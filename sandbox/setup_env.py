"""The repository's environment, prepared once per repository and commit and shared read-only by every run.

The set-up command runs in its own bubblewrap sandbox, in a fresh checkout at /repo, with the network on
(the only sandbox that has it) and /env writable. Its result (the /env directory) and its log are kept
under the cache, keyed by repository, commit and declarations; runs mount it read-only at /env with the
network off. Concurrent runs at the same commit wait for one set-up instead of repeating it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from pydantic import BaseModel

from sandbox.backends import BACKENDS
from sandbox.base import CommandResult
from sandbox.errors import TaskError, UserError
from sandbox.limits import ResourceLimits
from sandbox.policy import Mount, Policy
from sandbox.repo_config import ENV_INSIDE, RepoConfig
from sandbox.workspace import Workspace, create_workspace, remove_workspace

DEFAULT_CACHE = Path.home() / ".nightowl" / "envs"


class EnvironmentSetupFailed(TaskError):
    pass


class PreparedEnvironment(BaseModel):
    directory: Path
    log: Path
    reused: bool
    setup_s: float
    """How long the set-up took when it ran (0 when reused)."""


def environment_key(repo: Path, commit: str, config: RepoConfig) -> str:
    identity = {"repo": str(repo), "commit": commit, "setup": config.environment.setup,
                "toolchains": config.sandbox.toolchains, "path": config.sandbox.path}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def toolchain_policy(config: RepoConfig, base: Policy | None = None) -> Policy:
    """The agent's policy: the declared toolchains read-only, the declared PATH entries first."""
    base = base or Policy()
    mounts = [*base.mounts, *(Mount(source=p) for p in config.sandbox.toolchains)]
    return base.model_copy(update={"mounts": mounts, "path_prepend": [*config.sandbox.path, *base.path_prepend]})


def prepare_environment(repo: Path, commit: str, config: RepoConfig, kind: str,
                        cache: Path | None = None, base: Policy | None = None) -> PreparedEnvironment | None:
    """Runs the declared set-up unless a finished one is cached; None when nothing is declared."""
    setup = config.environment.setup
    if not setup:
        return None
    if kind in BACKENDS and not BACKENDS[kind].isolates:
        raise UserError("nightowl.toml declares an environment set-up, which needs the bubblewrap sandbox "
                        "(it is mounted at /env); run without --dangerously-no-sandbox")
    cache_root = cache or Path(os.environ.get("NIGHTOWL_ENV_CACHE") or DEFAULT_CACHE)
    root = cache_root / environment_key(repo, commit, config)
    root.mkdir(parents=True, exist_ok=True)
    env_dir, log, done = root / "env", root / "setup.log", root / "done.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one set-up at a time per key; the others reuse its result
        if done.exists():
            return PreparedEnvironment(directory=env_dir, log=log, reused=True, setup_s=0.0)
        shutil.rmtree(env_dir, ignore_errors=True)
        shutil.rmtree(root / "workspace", ignore_errors=True)
        env_dir.mkdir()
        started = time.monotonic()
        workspace = create_workspace(repo, commit, root / "workspace")
        try:
            result = run_setup(workspace, env_dir, setup, config, base)
        finally:
            remove_workspace(workspace)
        elapsed = time.monotonic() - started
        log.write_text(f"$ {setup}\n{result.output}\n[exit code {result.returncode}, {elapsed:.1f} s"
                       f"{', timed out' if result.timed_out else ''}]\n", encoding="utf-8")
        if result.returncode != 0:
            raise EnvironmentSetupFailed(f"the environment set-up in nightowl.toml failed (exit code "
                                         f"{result.returncode}{', timed out' if result.timed_out else ''}); "
                                         f"its log is {log}")
        done.write_text(json.dumps({"commit": commit, "setup": setup, "setup_s": elapsed}))
        return PreparedEnvironment(directory=env_dir, log=log, reused=False, setup_s=elapsed)


def run_setup(workspace: Workspace, env_dir: Path, setup: str, config: RepoConfig,
              base: Policy | None) -> CommandResult:
    from sandbox.bwrap import BubblewrapSandbox

    policy = toolchain_policy(config, base)
    seconds = int(config.environment.timeout_s)
    policy = policy.model_copy(update={
        "network": True,
        "mounts": [*policy.mounts, Mount(source=str(env_dir), target=ENV_INSIDE, writable=True)],
        "limits": policy.limits.model_copy(update={"cpu_seconds": max(seconds, policy.limits.cpu_seconds or 0)}),
    })
    sandbox = BubblewrapSandbox(workspace, policy=policy)
    try:
        if sandbox.privileged:  # the set-up runs as the sandbox's unprivileged uid and writes /env
            for dirpath, _, _ in os.walk(env_dir):
                os.lchown(dirpath, sandbox.uid, sandbox.gid)
        return sandbox.execute(setup, timeout=config.environment.timeout_s)
    finally:
        sandbox.close()


def environment_policy(prepared: PreparedEnvironment | None, config: RepoConfig,
                       limits: ResourceLimits | None = None, base: Policy | None = None) -> Policy:
    """`base`: the policy the user's settings chose (network, writable paths, variables); the repository adds mounts."""
    policy = toolchain_policy(config, base)
    if limits is not None:
        policy = policy.model_copy(update={"limits": limits})
    if prepared is not None:
        policy = policy.model_copy(update={"mounts": [*policy.mounts, Mount(source=str(prepared.directory),
                                                                            target=ENV_INSIDE)]})
    return policy
