"""Per-run workspaces: a private checkout of the user's repository at a chosen commit.

A workspace is a linked clone (`git clone --shared`: objects are read through git alternates, nothing
is copied) rather than a `git worktree`, because linked worktrees share the user's `.git/hooks`,
`.git/config` and refs: an agent running `git` inside one could write hooks into the user's repository.
A linked clone keeps every git write of the agent inside the workspace, and the user's working tree,
index, HEAD and stash are never touched. Results come back only as a branch created host-side from the
patch text (`commit_patch_to_branch`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.git import GitError, git, git_bytes, resolve_commit


@dataclass(frozen=True)
class Workspace:
    repo: Path
    """The user's repository (never written to except for result branches)."""
    path: Path
    """The private checkout the agent works in."""
    base_commit: str


BYTE_EXACT_ATTRIBUTES = b"* -text -eol -filter -ident -working-tree-encoding\n"
"""`$GIT_DIR/info/attributes` outranks every `.gitattributes`: the workspace holds the committed bytes and git
never converts line endings or encodings, expands `$Id$`, or runs the repository's filters (LFS, or a filter
command that does not exist here). A `working-tree-encoding` iconv does not know otherwise fails every diff."""

BYTE_EXACT_CONFIG = {
    "core.autocrlf": "false", "core.safecrlf": "false",
    # The sandbox hands the checkout to its user before every rollout (a chown, even to the same owner, moves
    # every ctime): without this, every diff would re-read every file to learn that nothing changed. Size,
    # mtime, inode and owner are still compared (a `core.checkStat=minimal` missed same-size edits made within
    # the second of the checkout).
    "core.trustctime": "false",
}


def create_workspace(repo: Path, commit: str, path: Path, owner: tuple[int, int] | None = None) -> Workspace:
    """`owner`: the sandbox's user, given the checkout here so that the index records it as the files' owner
    (else git would re-read every file on the first diff after the sandbox's own hand-over)."""
    base = resolve_commit(repo, commit)
    if path.exists():
        raise GitError(f"workspace {path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    git(path.parent, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(path))
    make_byte_exact(path)
    git(path, "checkout", "--quiet", "--detach", base)
    # A partial or damaged clone can lack some blobs: checkout leaves those files out. Marking them
    # skip-worktree keeps them out of the diff (which could not read them) instead of failing every run.
    missing = git(path, "ls-files", "--deleted", "-z").split("\0")
    if any(missing):
        git(path, "update-index", "--skip-worktree", "--", *[m for m in missing if m], check=False)
    # The clone's remote points at the user's repo; drop it so nothing inside can push or fetch there.
    git(path, "remote", "remove", "origin", check=False)
    if owner is not None:
        give_worktree(path, owner)
        git(path, "update-index", "-q", "--refresh", check=False)
    return Workspace(repo=repo, path=path, base_commit=base)


def give_worktree(path: Path, owner: tuple[int, int]) -> None:
    """The checkout's files (not `.git`: the sandbox decides which of it stays root's) to `owner`."""
    for dirpath, dirnames, filenames in os.walk(path):
        here = Path(dirpath)
        if here == path:
            dirnames[:] = [d for d in dirnames if d != ".git"]
        os.lchown(here, *owner)
        for name in filenames:
            os.lchown(here / name, *owner)


def make_byte_exact(path: Path) -> None:
    info = path / ".git" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "attributes").write_bytes(BYTE_EXACT_ATTRIBUTES)
    for key, value in BYTE_EXACT_CONFIG.items():
        git(path, "config", key, value)


def workspace_diff(ws: Workspace) -> bytes:
    """`git diff` of the working tree against the base commit, untracked (not ignored) files included.

    Uses a throw-away copy of the index so the agent's own staging area is left as it was.
    """
    real_index = Path(git(ws.path, "rev-parse", "--git-path", "index").strip())
    if not real_index.is_absolute():
        real_index = ws.path / real_index
    # Beside the checkout, not in it (the agent could plant a symlink there) nor in /tmp (a kill -9 would leave
    # it behind): the run directory or pool slot holding the workspace goes with it.
    with tempfile.TemporaryDirectory(prefix=".nightowl-index-", dir=ws.path.parent) as tmp:
        index = Path(tmp) / "index"
        if real_index.exists():
            # copy2 keeps the index's mtime: git trusts an entry's stat only if the file is older than the index
            # ("racy git"); a fresh mtime on the copy hid same-size edits made in the second of the checkout.
            shutil.copy2(real_index, index)
        env = {"GIT_INDEX_FILE": str(index)}
        git(ws.path, "add", "-A", "--", ".", env=env)
        return git_bytes(ws.path, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                         ws.base_commit,
                         env=env)


def commit_patch_to_branch(repo: Path, base_commit: str, patch: bytes, branch: str, message: str) -> str:
    """Create `branch` in the user's repo pointing at base_commit + patch, without touching its checkout.

    The patch is applied to a temporary index; the user's index, working tree and HEAD stay as they were.
    Returns the new commit's sha.
    """
    with tempfile.TemporaryDirectory(prefix="nightowl-branch-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git(repo, "read-tree", base_commit, env=env)
        if patch.strip():
            git(repo, "apply", "--cached", "--binary", "--whitespace=nowarn", "-", env=env, input=patch)
        tree = git(repo, "write-tree", env=env).strip()
    commit = git(repo, "commit-tree", tree, "-p", base_commit, "-m", message).strip()
    git(repo, "update-ref", f"refs/heads/{branch}", commit, "")
    return commit


def remove_workspace(ws: Workspace) -> None:
    shutil.rmtree(ws.path, ignore_errors=True)
