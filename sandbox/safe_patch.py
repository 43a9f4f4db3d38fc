"""Result patches that cannot reach outside the repository.

An agent can leave symlinks to `/etc/passwd`, to `/` or to `../../..` in its workspace; `git diff` records them
as they are, and the branch would carry them into the user's repository. Before a patch becomes a result, every
file section of it whose path is, in the workspace, a symlink leading out of the repository (an absolute target,
or one that escapes through `..` or through another link, or one into `.git`) or a special file (FIFO, socket,
device) is dropped, so the branch keeps that path as it was at the base commit. Special files never reach a git
patch by themselves, but they are listed too: the result names everything that was left out.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from pydantic import BaseModel

SECTION_START = b"diff --git "
SPECIAL_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device"}
PATH_LINES = re.compile(rb"^(?:rename from |rename to |copy from |copy to |--- |\+\+\+ )(.*)$", re.MULTILINE)
C_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13, b'"': 34, b"\\": 92}


class LeftOut(BaseModel):
    path: str
    """Relative to the repository root."""
    reason: str


def split_sections(patch: bytes) -> list[bytes]:
    """The patch's per-file sections (anything before the first one is its own piece)."""
    starts = [m.start() for m in re.finditer(rb"^diff --git ", patch, re.MULTILINE)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [patch[a:b] for a, b in zip(starts, [*starts[1:], len(patch)]) if patch[a:b]]


def unquote(name: bytes) -> tuple[bytes, bytes]:
    """A git C-quoted name at the start of `name` ("a/t\\303\\251st"), and what follows it."""
    out, i = bytearray(), 1
    while i < len(name) and name[i:i + 1] != b'"':
        if name[i:i + 1] == b"\\" and i + 1 < len(name):
            nxt = name[i + 1:i + 2]
            if nxt in C_ESCAPES:
                out.append(C_ESCAPES[nxt])
                i += 2
                continue
            if name[i + 1:i + 4].isdigit():
                out.append(int(name[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
        out += name[i:i + 1]
        i += 1
    return bytes(out), name[i + 1:]


def header_names(rest: bytes) -> list[bytes]:
    """The two names of `diff --git A B` (both quoted, or both plain and equal, as git writes them)."""
    if rest.startswith(b'"'):
        first, after = unquote(rest)
        after = after.lstrip(b" ")
        second = unquote(after)[0] if after.startswith(b'"') else after
        return [first, second]
    half = (len(rest) - 1) // 2
    if len(rest) % 2 == 1 and rest[half:half + 1] == b" ":
        return [rest[:half], rest[half + 1:]]
    return []


def section_paths(section: bytes) -> set[str]:
    """Every repository path a section may touch, read from its header, rename/copy and ---/+++ lines, with and
    without git's `a/` `b/` prefixes (a user's diff.noprefix drops them)."""
    first_line = section.split(b"\n", 1)[0]
    names = header_names(first_line[len(SECTION_START):]) if first_line.startswith(SECTION_START) else []
    for m in PATH_LINES.finditer(section):
        value = m.group(1).rstrip(b"\t\r")
        names.append(unquote(value)[0] if value.startswith(b'"') else value)
    paths = set()
    for name in names:
        if name == b"/dev/null" or not name:
            continue
        text = os.fsdecode(name)
        paths.add(text)
        if text[:2] in ("a/", "b/"):
            paths.add(text[2:])
    return paths


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unsafe_reason(host_root: Path, rel: str) -> str | None:
    """Why the workspace's `rel` must not reach a result, or None (also when it does not exist)."""
    path = host_root / rel
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_IFMT(mode) in SPECIAL_KINDS:
        return SPECIAL_KINDS[stat.S_IFMT(mode)]
    if not stat.S_ISLNK(mode):
        return None
    target = os.readlink(path)
    if os.path.isabs(target):
        return f"a symlink to the absolute path {target}"
    root = os.path.realpath(host_root)
    resolved = os.path.realpath(path)
    if not inside(resolved, root):
        return f"a symlink to {target}, which leads outside the repository"
    if inside(resolved, os.path.join(root, ".git")):
        return f"a symlink to {target}, which leads into .git"
    return None


def special_files(host_root: Path) -> list[LeftOut]:
    """FIFOs, sockets and devices anywhere in the workspace outside .git (git never records them)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(host_root):
        if dirpath == str(host_root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            try:
                kind = SPECIAL_KINDS.get(stat.S_IFMT(os.lstat(os.path.join(dirpath, name)).st_mode))
            except OSError:
                continue
            if kind:
                found.append(LeftOut(path=os.path.relpath(os.path.join(dirpath, name), host_root), reason=kind))
    return found


def safe_patch(patch: bytes, host_root: Path) -> tuple[bytes, list[LeftOut]]:
    """`patch` (a `git diff --binary` of the workspace at `host_root`) without the sections of unsafe paths, and
    what was left out, sorted by path."""
    kept: list[bytes] = []
    left_out = {item.path: item for item in special_files(host_root)}
    for section in split_sections(patch):
        reasons = {p: r for p in sorted(section_paths(section)) if (r := unsafe_reason(host_root, p))}
        if not reasons:
            kept.append(section)
        for path, reason in reasons.items():
            left_out[path] = LeftOut(path=path, reason=reason)
    return b"".join(kept), sorted(left_out.values(), key=lambda item: item.path)


def describe_left_out(left_out: list[LeftOut]) -> str:
    return "; ".join(f"{item.path} ({item.reason})" for item in left_out)


__all__ = ["LeftOut", "describe_left_out", "safe_patch"]
