"""Result branches `nightowl/<task-id>` in the user's repo, created at most once per task.

The commit message names the attempt's run id, so a branch found after a crash can be told apart: ours
(adopt it) or someone else's (never overwrite it).
"""
from __future__ import annotations

from pathlib import Path

from agent.run import commit_message
from sandbox.errors import UserError
from sandbox.git import GitError, git
from sandbox.workspace import commit_patch_to_branch


class BranchConflict(UserError):
    pass


def branch_name(task_id: str) -> str:
    return f"nightowl/{task_id}"


def branch_run_id(repo: Path, branch: str) -> str | None:
    """The run id recorded in the branch's commit, '' for a foreign branch, None when there is no branch."""
    try:
        git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}")
    except GitError:
        return None
    body = git(repo, "log", "-1", "--format=%B", f"refs/heads/{branch}")
    for line in body.splitlines():
        if line.startswith("nightowl run "):
            return line.removeprefix("nightowl run ").strip()
    return ""


def ensure_branch(repo: Path, task_id: str, task: str, run_id: str, base_commit: str, patch: bytes) -> str:
    """Creates the task's branch for this attempt, or adopts it if this attempt already created it."""
    branch = branch_name(task_id)
    owner = branch_run_id(repo, branch)
    if owner == run_id:
        return branch
    if owner is not None:
        raise BranchConflict(f"branch {branch} already exists (from {owner or 'outside nightowl'}); left untouched, "
                             "the patch is in the run directory")
    try:
        commit_patch_to_branch(repo, base_commit, patch, branch, message=commit_message(task, run_id))
    except GitError:
        # A shift killed inside `git update-ref` leaves the ref's lock file behind. The nightowl/ namespace is
        # ours and the caller holds the shift lock, so a lock there is stale: remove it and try once more.
        lock = Path(git(repo, "rev-parse", "--git-common-dir").strip())
        lock = (lock if lock.is_absolute() else repo / lock) / "refs" / "heads" / f"{branch}.lock"
        if not lock.exists():
            raise
        lock.unlink()
        commit_patch_to_branch(repo, base_commit, patch, branch, message=commit_message(task, run_id))
    return branch
