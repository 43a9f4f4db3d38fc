"""The benchmark's cut-off: commits from `since` on are held out, so training data must predate it.

`bench-history` records the cut-off in the repository's git directory (never in its working tree), where
`generate` (demonstrations from history) and `export` (snapshots and demonstrations) find it without being told.
"""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.file_format import NewerFormatError
from agent.trajectory import read_trajectory_data, write_text_atomic
from sandbox.errors import UserError
from training.layout import DEMONSTRATIONS, DEMONSTRATIONS_FILE, HOLDOUT_FILE
from training.layout import HOLDOUT_RECORD as RECORD


class HoldoutLeak(UserError, ValueError):
    """Training data post-dates the benchmark's cut-off."""


def git_dir(repo: Path) -> Path:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--absolute-git-dir"], capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"{repo} is not a git repository")
    return Path(out.stdout.strip())


def record_holdout(repo: Path, since: datetime, tasks_file: Path) -> datetime:
    """Keeps the earliest cut-off of every benchmark mined from this repo; returns the one in force."""
    path = git_dir(repo) / RECORD
    current = holdout_since(repo)
    effective = min(since, current) if current else since
    write_text_atomic(path, HOLDOUT_FILE.dumps({"since": effective.astimezone(timezone.utc).isoformat(),
                                                "tasks": str(tasks_file.resolve())}, indent=1) + "\n")
    return effective


def holdout_since(repo: Path) -> datetime | None:
    try:
        path = git_dir(repo) / RECORD
    except UserError:
        return None
    if not path.is_file():
        return None
    return datetime.fromisoformat(HOLDOUT_FILE.load(path)["since"])


def commit_time(repo: Path, commit: str) -> datetime | None:
    out = subprocess.run(["git", "-C", str(repo), "show", "-s", "--format=%cI", commit], capture_output=True, text=True)
    return datetime.fromisoformat(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def last_commit_before(repo: Path, since: datetime) -> str | None:
    """The newest commit on HEAD's history committed before the cut-off: a snapshot safe to train on."""
    out = subprocess.run(["git", "-C", str(repo), "rev-list", "-1", f"--before={int(since.timestamp()) - 1}", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def demonstrations_record(source: str, since: datetime | None) -> str:
    return DEMONSTRATIONS_FILE.dumps({"source": source, "holdout_since": since.isoformat() if since else None}) + "\n"


def find_leaks(trajectories: list[Path]) -> list[str]:
    """What post-dates a recorded cut-off: snapshots (a trajectory's start commit) and history demonstrations."""
    leaks: list[str] = []
    cutoffs: dict[str, datetime | None] = {}
    seen_dirs: set[Path] = set()
    for path in trajectories:
        try:
            traj: dict[str, Any] = read_trajectory_data(path)
        except NewerFormatError:
            raise
        except (OSError, ValueError):
            continue  # export drops unreadable trajectories itself
        repo, base = str(traj.get("repo", "")), str(traj.get("base_commit", ""))
        if repo not in cutoffs:
            cutoffs[repo] = holdout_since(Path(repo)) if repo and Path(repo).is_dir() else None
        since = cutoffs[repo]
        if since is None:
            continue
        when = commit_time(Path(repo), base)
        if when is not None and when >= since:
            leaks.append(f"{path}: starts at {base[:12]} committed {when.isoformat()}")
        for parent in path.parents:
            record = parent / DEMONSTRATIONS
            if parent in seen_dirs or not record.is_file():
                continue
            seen_dirs.add(parent)
            demo = DEMONSTRATIONS_FILE.load(record)
            honoured = demo.get("holdout_since")
            if demo.get("source") == "history" and (honoured is None or datetime.fromisoformat(honoured) > since):
                leaks.append(f"{parent}: demonstrations were drawn from history without the cut-off")
    return leaks


def refuse_leaks(trajectories: list[Path], allow: bool) -> None:
    if allow:
        return
    leaks = find_leaks(trajectories)
    if leaks:
        raise HoldoutLeak(f"{len(leaks)} training item(s) post-date the benchmark cut-off (first: {leaks[0]}); "
                          "generate from a commit before it, or pass --allow-holdout-leak to export anyway")
