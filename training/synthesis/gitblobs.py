"""Reading a commit's files straight from git objects (never the working tree), in one `git cat-file` process."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from sandbox.errors import UserError


class GitReadError(UserError, ValueError):
    """The repository or commit cannot be read (the user names another)."""


def git_out(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if proc.returncode != 0:
        raise GitReadError(f"git {' '.join(args[:2])} failed in {repo}: "
                           f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return proc.stdout


def resolve(repo: Path, commit: str) -> str:
    try:
        return git_out(repo, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").decode().strip()
    except GitReadError:
        raise GitReadError(f"{commit!r} is not a commit in {repo} (check `git log`)") from None


def tree_files(repo: Path, commit: str) -> list[tuple[str, str, int]]:
    """(path, blob sha, size) of every regular file at `commit`; size -1 when the blob is not present."""
    out = git_out(repo, "ls-tree", "-r", "-z", "--long", "--full-tree", commit)
    files = []
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        mode, kind, sha, size = meta.split()
        if kind != b"blob" or mode not in (b"100644", b"100755"):
            continue
        files.append((path.decode("utf-8", "surrogateescape"), sha.decode(), int(size) if size.isdigit() else -1))
    return files


def read_blobs(repo: Path, shas: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """(sha, content) in order; content None for a blob missing from this clone (partial or damaged)."""
    if not shas:
        return
    proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin and proc.stdout
    try:
        for sha in shas:
            proc.stdin.write(sha.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3:  # "<sha> missing" (or git failed to read it)
                yield sha, None
                continue
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)  # the newline after the object
            yield sha, data
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def ignored_paths(repo: Path, paths: list[str]) -> set[str]:
    """Which of `paths` the repo's ignore rules match (tracked or not: a force-added file is still ignored)."""
    if not paths:
        return set()
    proc = subprocess.run(["git", "-C", str(repo), "check-ignore", "--no-index", "-z", "--stdin"],
                          input=b"\0".join(p.encode("utf-8", "surrogateescape") for p in paths) + b"\0",
                          capture_output=True)
    return {p.decode("utf-8", "surrogateescape") for p in proc.stdout.split(b"\0") if p}
