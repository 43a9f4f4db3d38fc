"""Reusable workspaces: one per worker, reset to a pristine checkout between rollouts.

Creating a workspace writes every file of the repository and removing it deletes them all again: on a
2,000-file repository that was most of a rollout's cost. A pooled workspace is created once; between two
rollouts its `.git` is replaced by the copy saved right after the checkout (so no ref, reflog, stash, staged
change or object of the last rollout survives; the saved index keeps git from re-reading unchanged files),
`git reset --hard` rewrites only the files that changed, `git clean` removes the rest, and `git status` must
then show nothing, or the workspace is thrown away and a fresh one made.

Slots are directories `nightowl-<pid>-w<n>` under the pool's root, so a pool started after a kill -9 removes
the slots of dead processes and never those of a live one sharing the root.
"""
from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path

from sandbox.cgroups import owner_alive
from sandbox.git import GitError, git, resolve_commit
from sandbox.workspace import Workspace, create_workspace

PRISTINE = "pristine-git"
"""Beside each slot's checkout: its `.git` as it was right after the checkout, objects excepted (they are
read through the alternates file, which is kept)."""


class WorkspacePool:
    def __init__(self, root: Path):
        self.root = root.expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.idle: list[Workspace] = []
        self.slots: set[Path] = set()
        self.numbers = itertools.count()
        self.created = self.reused = self.discarded = 0
        reap_dead_slots(self.root)

    def acquire(self, repo: Path, commit: str, owner: tuple[int, int] | None = None) -> Workspace:
        """A workspace of `repo` at `commit`: an idle one reset, else a new one (`owner`: see create_workspace)."""
        base = resolve_commit(repo, commit)
        with self.lock:
            ws = next((w for w in self.idle if w.repo == repo), None)
            if ws is not None:
                self.idle.remove(ws)
            slot = None if ws is not None else self.root / f"nightowl-{os.getpid()}-w{next(self.numbers)}"
        if ws is not None:
            try:
                reset_workspace(ws, base)
                with self.lock:
                    self.reused += 1
                return Workspace(repo=repo, path=ws.path, base_commit=base)
            except (GitError, OSError):
                shutil.rmtree(ws.path.parent, ignore_errors=True)
                with self.lock:
                    self.discarded += 1
                    self.slots.discard(ws.path.parent)
                    slot = self.root / f"nightowl-{os.getpid()}-w{next(self.numbers)}"
        assert slot is not None
        with self.lock:
            self.slots.add(slot)
        ws = create_workspace(repo, base, slot / "repo", owner)
        save_pristine(ws)
        with self.lock:
            self.created += 1
        return ws

    def release(self, ws: Workspace) -> None:
        with self.lock:
            self.idle.append(ws)

    def close(self) -> None:
        """Removes every slot this pool made (workers have stopped using them)."""
        with self.lock:
            slots, self.slots, self.idle = self.slots, set(), []
        for slot in slots:
            shutil.rmtree(slot, ignore_errors=True)


def save_pristine(ws: Workspace) -> None:
    gitdir = ws.path / ".git"
    pristine = ws.path.parent / PRISTINE
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(gitdir, pristine, symlinks=True, ignore=lambda d, names: [
        n for n in names if Path(d) == gitdir / "objects" and n != "info"])


def reset_workspace(ws: Workspace, base: str) -> None:
    """Back to the pristine checkout, then to `base`; raises GitError if anything is left over."""
    gitdir = ws.path / ".git"
    pristine = ws.path.parent / PRISTINE
    if not pristine.is_dir():
        raise GitError(f"{pristine} is missing")
    if gitdir.is_symlink() or not gitdir.is_dir():
        raise GitError(f"{gitdir} was replaced")
    for entry in gitdir.iterdir():
        remove(entry)
    shutil.copytree(pristine, gitdir, symlinks=True, dirs_exist_ok=True)
    git(ws.path, "reset", "--hard", "--quiet", base)
    git(ws.path, "clean", "-ffdxq")
    left = git(ws.path, "status", "--porcelain", "--ignored", "--untracked-files=all")
    if left.strip():
        raise GitError(f"reset left changes in {ws.path}: {left[:200]}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def reap_dead_slots(root: Path) -> None:
    """Slots of processes that are gone (a kill -9 leaves them); never a live process's."""
    for slot in root.glob("nightowl-*-w*"):
        if not owner_alive(slot.name):
            shutil.rmtree(slot, ignore_errors=True)
