"""Host-side git, hardened for repositories an agent has touched.

Every call disables hooks and fsmonitor and ignores the user's global/system config for the things an
agent could abuse, so a workspace's contents can never make the host run code.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sandbox.errors import InfrastructureError, TaskError, UserError

SAFE_GIT_FLAGS = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=",
    "-c", "core.untrackedCache=false",
    "-c", "safe.directory=*",
    "-c", "diff.external=",
    "-c", "core.pager=cat",
]


class GitError(InfrastructureError):
    """A host-side git command failed."""


class NotARepository(UserError):
    pass


class UnknownCommit(TaskError):
    pass


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "nightowl", "GIT_AUTHOR_EMAIL": "nightowl@localhost",
        "GIT_COMMITTER_NAME": "nightowl", "GIT_COMMITTER_EMAIL": "nightowl@localhost",
    })
    env.update(extra or {})
    return env


def git_bytes(repo: Path | str, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
              check: bool = True) -> bytes:
    """git's stdout exactly as it wrote it (patches of files that are not UTF-8 must stay byte-exact)."""
    proc = subprocess.run(
        ["git", *SAFE_GIT_FLAGS, "-C", str(repo), *args],
        input=input, capture_output=True, env=git_env(env),
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def git(repo: Path | str, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
        check: bool = True) -> str:
    return git_bytes(repo, *args, env=env, input=input, check=check).decode(errors="replace")


def repo_toplevel(path: Path) -> Path:
    """The root of the git repository at `path`; raises NotARepository with a readable message otherwise."""
    if not path.exists():
        raise NotARepository(f"{path} does not exist")
    if not path.is_dir():
        raise NotARepository(f"{path} is not a directory")
    proc = subprocess.run(["git", *SAFE_GIT_FLAGS, "-C", str(path), "rev-parse", "--show-toplevel"],
                          capture_output=True, env=git_env())
    if proc.returncode != 0:
        raise NotARepository(f"{path} is not a git repository (run `git init` there, or point at a repository)")
    return Path(proc.stdout.decode().strip())


def resolve_commit(repo: Path, rev: str) -> str:
    proc = subprocess.run(["git", *SAFE_GIT_FLAGS, "-C", str(repo), "rev-parse", "--verify", "--quiet",
                           f"{rev}^{{commit}}"], capture_output=True, env=git_env())
    if proc.returncode != 0:
        if rev != "HEAD" and has_commits(repo):
            raise UnknownCommit(f"{rev!r} is not a commit in {repo} "
                                f"(see `git -C {repo} log --oneline` for the ones there are)")
        raise UnknownCommit(f"{repo} has no commits yet: commit something first (`git commit`), "
                            "the run starts from a commit")
    return proc.stdout.decode().strip()


def has_commits(repo: Path) -> bool:
    return subprocess.run(["git", *SAFE_GIT_FLAGS, "-C", str(repo), "rev-parse", "--verify", "--quiet", "HEAD"],
                          capture_output=True, env=git_env()).returncode == 0


def uncommitted_changes(repo: Path) -> int:
    """How many paths differ from HEAD or are untracked (ignored files excluded)."""
    return len(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines())
