"""Workspaces hold the committed bytes whatever `.gitattributes` declares, and their diffs are of bytes.

The fixture repository declares what real projects declare (a `working-tree-encoding` iconv does not know, as
Sphinx's does; a filter whose command does not exist; CRLF with `text=auto`; `ident`; an LFS pointer), and holds
latin-1 and CRLF files. Its content is committed before its `.gitattributes`, so the commit holds exactly the
bytes written here.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from sandbox.limits import ResourceLimits
from sandbox.select import open_sandbox
from sandbox.workspace import commit_patch_to_branch, create_workspace, remove_workspace, workspace_diff
from tests.helpers import IDENTITY, git

ATTRIBUTES = b"""* text=auto
*.inc working-tree-encoding=no-such-encoding
*.dat filter=does-not-exist
*.c ident
*.bin filter=lfs diff=lfs merge=lfs -text
"""
FILES = {
    "latin1.inc": "caf\u00e9 cr\u00e8me\n".encode("latin-1"),
    "crlf.txt": b"one\r\ntwo\r\n",
    "data.dat": b"raw data, no filter runs\n",
    "ident.c": b"/* $Id$ */\nint x;\n",
    "model.bin": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12345\n",
}


def committed(repo: Path, rev: str, path: str) -> bytes:
    return git(repo, "cat-file", "blob", f"{rev}:{path}", binary=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Built with plumbing (`hash-object --no-filters`): the attributes never touch the committed bytes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "filter.does-not-exist.smudge", "/nonexistent/smudge-command")
    git(repo, "config", "filter.does-not-exist.clean", "/nonexistent/clean-command")
    git(repo, "config", "filter.does-not-exist.required", "true")
    for name, data in {**FILES, ".gitattributes": ATTRIBUTES}.items():
        (repo / name).write_bytes(data)
        blob = git(repo, "hash-object", "-w", "--no-filters", name, binary=True).decode().strip()
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
    tree = git(repo, "write-tree", binary=True).decode().strip()
    commit = git(repo, *IDENTITY, "commit-tree", tree, "-m", "content and attributes", binary=True).decode().strip()
    git(repo, "update-ref", "HEAD", commit)
    return repo


def user_checkout_snapshot(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()}


@pytest.mark.parametrize("backend", ["bwrap", "local"])
def test_workspace_holds_committed_bytes_and_diffs_only_the_agents_change(repo: Path, tmp_path: Path, backend: str):
    for name, data in FILES.items():
        assert committed(repo, "HEAD", name) == data  # the fixture is what it claims
    before = user_checkout_snapshot(repo)
    ws = create_workspace(repo, "HEAD", tmp_path / "ws")
    try:
        for name, data in FILES.items():
            assert (ws.path / name).read_bytes() == data, name
        box = open_sandbox(backend, ws, ResourceLimits(cpu_seconds=20, memory_mb=256, max_processes=64))
        try:
            assert workspace_diff(ws) == b""  # nothing reads as changed: no conversion, no filter
            ran = box.execute("printf 'na\\xefve\\r\\n' >> latin1.inc && printf 'three\\r\\n' >> crlf.txt", timeout=30)
            assert ran.returncode == 0, ran.output
            patch = box.diff()
        finally:
            box.close()
        assert b"latin1.inc" in patch and b"crlf.txt" in patch
        assert not any(name.encode() in patch for name in ("data.dat", "ident.c", "model.bin"))
        sha = commit_patch_to_branch(repo, ws.base_commit, patch, "nightowl/bytes", "append")
    finally:
        remove_workspace(ws)
    assert committed(repo, sha, "latin1.inc") == FILES["latin1.inc"] + b"na\xefve\r\n"
    assert committed(repo, sha, "crlf.txt") == FILES["crlf.txt"] + b"three\r\n"
    for name in ("data.dat", "ident.c", "model.bin"):
        assert committed(repo, sha, name) == FILES[name]
    assert user_checkout_snapshot(repo) == before


def test_diff_does_not_reread_files_after_the_checkout_changes_owner(repo: Path, tmp_path: Path):
    """The sandbox hands the checkout to its user before every rollout (a chown moves every ctime); git must not
    take that for a change. `git diff-files` does not refresh the index: it lists every entry whose stat data
    no longer matches, i.e. every file the next `git add -A` would have to read and hash again."""
    ws = create_workspace(repo, "HEAD", tmp_path / "ws", owner=(65534, 65534))
    try:
        assert all((ws.path / name).stat().st_uid == 65534 for name in FILES)
        time.sleep(1.1)  # past git's racy-timestamp window, so the index's stat data is trusted
        for name in FILES:
            os.chown(ws.path / name, 65534, 65534)
        stale = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(ws.path), "diff-files", "--name-only"],
                               capture_output=True)
        assert stale.returncode == 0 and stale.stdout == b""
    finally:
        remove_workspace(ws)


def test_a_same_size_edit_right_after_the_checkout_is_in_the_diff(repo: Path, tmp_path: Path):
    """Within the second of the checkout, with the same size, through the sandbox's hand-over: only the finer
    stat data (or the content) can show it."""
    missed = []
    for attempt in range(6):
        ws = create_workspace(repo, "HEAD", tmp_path / f"ws{attempt}", owner=(65534, 65534))
        box = open_sandbox("bwrap", ws, ResourceLimits(cpu_seconds=20, memory_mb=256, max_processes=64))
        try:
            ran = box.execute("tr a-z A-Z < data.dat > x && cat x > data.dat && rm x", timeout=30)
            assert ran.returncode == 0, ran.output
            if b"DATA" not in box.diff():
                missed.append(attempt)
        finally:
            box.close()
            remove_workspace(ws)
    assert missed == []


def test_a_same_size_edit_in_the_second_of_the_checkout_is_in_a_diff_taken_later(repo: Path, tmp_path: Path):
    """Git trusts an index entry's stat data only for files older than the index ("racy git"). The diff works on
    a copy of the index: the copy must keep the index's mtime, or an edit made in the checkout's second (same
    size, same inode) looks clean to a diff taken a second later. An eval lost an oracle's patch this way."""
    ws = create_workspace(repo, "HEAD", tmp_path / "ws")
    try:
        index = ws.path / ".git" / "index"
        target = ws.path / "data.dat"
        with open(target, "r+b") as f:  # in place: same inode, same size
            f.write(FILES["data.dat"].upper())
        stamp = index.stat().st_mtime_ns
        os.utime(target, ns=(stamp, stamp))  # as if written in the very instant git wrote its index
        time.sleep(1.1)
        assert b"DATA" in workspace_diff(ws)
    finally:
        remove_workspace(ws)
