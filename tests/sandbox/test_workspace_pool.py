"""Pooled workspaces: reset between rollouts leaves nothing of the last one (files, refs, reflogs, stashes,
objects), follows a new base commit, and a workspace that cannot be reset is replaced. Real git throughout."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandbox.workspace_pool import WorkspacePool
from tests.helpers import IDENTITY, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "a.py").write_text("one\n")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "b.py").write_text("two\n")
    git(repo, "add", "-A")
    git(repo, *IDENTITY, "commit", "-qm", "first")
    (repo / "a.py").write_text("one\nmore\n")
    git(repo, *IDENTITY, "commit", "-qam", "second")
    return repo


def agent_leaves_a_mess(ws: Path) -> None:
    (ws / "a.py").write_text("changed\n")
    (ws / "pkg" / "b.py").unlink()
    (ws / "new.txt").write_text("new\n")
    (ws / "debug.log").write_text("ignored\n")
    (ws / "nested").mkdir()
    git(ws / "nested", "init", "-q")  # a nested repository (clean -ff removes it too)
    git(ws, "checkout", "-q", "-b", "agent-branch")
    git(ws, "add", "new.txt")
    git(ws, *IDENTITY, "commit", "-qm", "agent commit")
    (ws / "a.py").write_text("stashed\n")
    git(ws, *IDENTITY, "stash", "-q")
    git(ws, "tag", "agent-tag")
    os.symlink("/etc/passwd", ws / "leak")


def test_a_reset_leaves_nothing_of_the_last_rollout(repo: Path, tmp_path: Path):
    pool = WorkspacePool(tmp_path / "pool")
    first = pool.acquire(repo, "HEAD")
    refs_before = git(first.path, "for-each-ref")
    agent_leaves_a_mess(first.path)
    pool.release(first)
    second = pool.acquire(repo, "HEAD")
    try:
        assert second.path == first.path and pool.reused == 1 and pool.created == 1
        assert git(second.path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
        assert (second.path / "a.py").read_text() == "one\nmore\n" and (second.path / "pkg" / "b.py").read_text() == "two\n"
        assert not (second.path / "leak").exists() and not (second.path / "nested").exists()
        assert git(second.path, "for-each-ref") == refs_before  # no agent-branch, tag or stash
        assert git(second.path, "rev-parse", "HEAD").strip() == git(repo, "rev-parse", "HEAD").strip()
        assert "agent commit" not in git(second.path, "log", "--all", "--oneline")
        assert "agent" not in git(second.path, "reflog", "--all")
        loose = [p for p in (second.path / ".git" / "objects").rglob("*") if p.is_file() and p.parent.name != "info"]
        assert loose == []  # the agent's objects are gone with it
    finally:
        pool.close()
    assert not (tmp_path / "pool").exists() or not any((tmp_path / "pool").iterdir())


def test_a_pooled_workspace_follows_the_next_rollouts_commit(repo: Path, tmp_path: Path):
    pool = WorkspacePool(tmp_path / "pool")
    try:
        ws = pool.acquire(repo, "HEAD")
        pool.release(ws)
        older = pool.acquire(repo, "HEAD~1")
        assert older.base_commit == git(repo, "rev-parse", "HEAD~1").strip()
        assert (older.path / "a.py").read_text() == "one\n" and pool.reused == 1
    finally:
        pool.close()


def test_a_workspace_that_cannot_be_reset_is_replaced(repo: Path, tmp_path: Path):
    pool = WorkspacePool(tmp_path / "pool")
    try:
        ws = pool.acquire(repo, "HEAD")
        (ws.path / ".git").rename(ws.path / "moved-git")
        os.symlink("/etc", ws.path / ".git")
        pool.release(ws)
        fresh = pool.acquire(repo, "HEAD")
        assert pool.discarded == 1 and pool.created == 2 and fresh.path != ws.path
        assert git(fresh.path, "status", "--porcelain", "--untracked-files=all") == ""
        assert not ws.path.exists()
    finally:
        pool.close()


def test_slots_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path):
    root = tmp_path / "pool"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / f"nightowl-{dead.pid}-w0" / "repo").mkdir(parents=True)
    (root / f"nightowl-{os.getppid()}-w0").mkdir()
    WorkspacePool(root)
    assert sorted(p.name for p in root.iterdir()) == [f"nightowl-{os.getppid()}-w0"]
