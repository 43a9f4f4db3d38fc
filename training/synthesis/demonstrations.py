"""Demonstration issues the synthetic PR imitates: the repo's own history, a user's file, or generic ones."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path

import git

from sandbox.errors import UserError

GENERIC: tuple[str, ...] = (
    "Calling `load_config()` with a path that does not exist raises a bare KeyError instead of saying which "
    "file is missing.\n\nSteps: point the loader at a missing file and call it. Expected: an error naming the "
    "path. Actual: `KeyError: 'root'`.",
    "Parsing a date string with a trailing timezone offset silently drops the offset, so the result is off by "
    "hours for anyone outside UTC. Example: parse `2024-03-01T10:00:00+02:00` and print the hour: it says 10, "
    "it should be 8 in UTC.",
    "The retry helper keeps retrying even after the caller cancels, so shutdown takes as long as the full "
    "backoff schedule. Start a request against an unreachable host, cancel it after a second, and watch the "
    "process linger for about a minute.",
    "Docs for `merge_options` say later values win, but for nested dictionaries the earlier ones do. Merging "
    "`{'a': {'x': 1}}` with `{'a': {'x': 2}}` gives `x == 1`.",
    "Exporting a report with zero rows produces a file with no header line, which breaks importers that expect "
    "the columns to be present even when empty.",
)
MIN_CHARS, MAX_CHARS = 40, 2_000
SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)
TRAILER = re.compile(r"^[A-Za-z][A-Za-z-]*-by: ")


def from_history(repo: Path, limit: int = 500, before: datetime | None = None) -> list[str]:
    """Commit messages with a body, and merge titles: how this project describes its own changes.

    `before`: a benchmark's cut-off; later commits are held out and never imitated."""
    texts: list[str] = []
    try:
        handle = git.Repo(repo)
        for commit in handle.iter_commits(max_count=limit * 4):
            if before is not None and commit.committed_datetime >= before:
                continue
            message = commit.message if isinstance(commit.message, str) else commit.message.decode("utf-8", "replace")
            message = without_trailers(message)
            if MIN_CHARS <= len(message) <= MAX_CHARS and (len(commit.parents) > 1 or "\n" in message):
                texts.append(message)
            if len(texts) >= limit:
                break
    except (git.GitError, ValueError):
        return []
    return texts


def without_trailers(message: str) -> str:
    """Drops `Co-authored-by:`/`Signed-off-by:` style lines: they are bookkeeping, not description."""
    lines = [line for line in message.strip().splitlines() if not TRAILER.match(line)]
    return "\n".join(lines).strip()


def from_file(path: Path) -> list[str]:
    """A user's issue texts: entries separated by a line holding only `---`."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UserError(f"cannot read demonstrations file {path}: {e.strerror}") from None
    entries = [e.strip() for e in SEPARATOR.split(raw.replace("\r\n", "\n"))]
    entries = [e for e in entries if e]
    if not entries:
        raise UserError(f"demonstrations file {path} has no entries (separate issue texts with a line `---`)")
    return entries


def demonstration_pool(repo: Path, user_file: Path | None, before: datetime | None = None) -> tuple[list[str], str]:
    """The pool and where it came from."""
    if user_file is not None:
        return from_file(user_file), f"file:{user_file}"
    history = from_history(repo, before=before)
    if len(history) >= 5:
        return history, "history"
    return list(GENERIC), "generic"


def pick_demonstration(pool: list[str], sample_id: str, seed: int) -> str:
    digest = hashlib.sha256(f"demo:{seed}:{sample_id}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]
