"""sandbox/safe_patch.py on real git patches: what may reach a result branch and what is left out."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from sandbox.safe_patch import safe_patch, section_paths, split_sections
from tests.helpers import IDENTITY, git


def workspace_patch(repo: Path) -> bytes:
    git(repo, "add", "-A")
    return git(repo, "diff", "--cached", "--binary", "-M", "HEAD", binary=True)


def test_escaping_links_and_special_files_are_left_out_and_the_rest_kept(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("a\n")
    (repo / "old name.py").write_text("moved\n" * 20)
    git(repo, "add", "-A")
    git(repo, *IDENTITY, "commit", "-qm", "base")
    (repo / "sub").mkdir()
    links = {"abs": "/etc/passwd", "sub/up": "../../etc", "t\u00e9st link": "/root", "hop": "sub/up/hostname",
             "into_git": ".git/hooks", "inside": "a.py", "sub/sibling": "../a.py", "dangling": "nowhere"}
    for name, target in links.items():
        os.symlink(target, repo / name)
    os.mkfifo(repo / "sub" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(repo / "sock"))
    os.rename(repo / "old name.py", repo / "new name.py")
    (repo / 'q"uote.py').write_text("q\n")
    patch = workspace_patch(repo)
    kept, left_out = safe_patch(patch, repo)
    sock.close()
    assert {item.path: item.reason for item in left_out} == {
        "abs": "a symlink to the absolute path /etc/passwd",
        "sub/up": "a symlink to ../../etc, which leads outside the repository",
        "t\u00e9st link": "a symlink to the absolute path /root",
        "hop": "a symlink to sub/up/hostname, which leads outside the repository",
        "into_git": "a symlink to .git/hooks, which leads into .git",
        "sub/fifo": "a FIFO", "sock": "a socket"}
    kept_paths = set().union(*(section_paths(s) for s in split_sections(kept)))
    assert {"inside", "sub/sibling", "dangling", "new name.py", "old name.py", 'q"uote.py'} <= kept_paths
    assert not kept_paths & {"abs", "sub/up", "t\u00e9st link", "hop", "into_git"}
    # what is kept still applies to the base commit
    subprocess.run(["git", "-C", str(repo), "apply", "--check", "-R", "--cached", "-"], input=kept, check=True)


def test_a_patch_with_nothing_unsafe_is_unchanged(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_bytes(b"\x00\x01binary\n")
    git(repo, "add", "-A")
    git(repo, *IDENTITY, "commit", "-qm", "base")
    (repo / "a.py").write_bytes(b"\x00\x02binary\n")
    (repo / "b.txt").write_text("b\n")
    patch = workspace_patch(repo)
    assert safe_patch(patch, repo) == (patch, [])
    assert safe_patch(b"", repo) == (b"", [])
