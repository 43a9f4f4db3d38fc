"""Shared pieces for the orchestrator tests: a scratch repo, a scripted agent, checkout fingerprints."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers import git

SANDBOX = "auto"
"""Always the real isolation: if bubblewrap does not work here these tests fail (never a quiet fallback to
the unisolated backend); `open_sandbox` says what is missing."""
TASK_ID = re.compile(r"\[(t-\d+)\]")


def kill_9_once_exists(cmd: list, marker: Path, cwd: Path, timeout: float = 900) -> None:
    """Starts `cmd` in its own session and SIGKILLs the whole session once `marker` exists (it must still run)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "README.md").write_text("hello\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hi')\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "init")
    # a dirty checkout, a stash and an untracked file: all must survive the shift byte for byte
    (path / "README.md").write_text("hello\nlocal edit\n")
    git(path, "stash", "-q")
    (path / "README.md").write_text("hello\nuncommitted\n")
    (path / "notes.txt").write_text("untracked\n")
    return path


def write_tasks(path: Path, n: int, fmt: str = "jsonl") -> Path:
    tasks = [{"id": f"t-{i:03d}", "task": f"[t-{i:03d}] create the file out/t-{i:03d}.txt"} for i in range(n)]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    else:
        import yaml
        path.write_text(yaml.safe_dump(tasks))
    return path


def shift_inputs(tmp_path: Path, n: int) -> tuple[Path, Path, Path]:
    """(repo, tasks file with n tasks, the --out path, not created) under tmp_path: what most shift tests start from."""
    return make_repo(tmp_path / "repo"), write_tasks(tmp_path / "tasks.jsonl", n), tmp_path / "out"


def task_of(request: dict[str, Any]) -> str:
    for m in request.get("messages", []):
        if m.get("role") == "user" and (found := TASK_ID.search(str(m.get("content")))):
            return found.group(1)
    return "t-unknown"


def agent_reply(request: dict[str, Any], sleep: float = 0.0) -> dict[str, Any]:
    """A well-behaved agent: write one file, then call submit twice."""
    turns = sum(1 for m in request.get("messages", []) if m.get("role") == "assistant")
    tid = task_of(request)
    if turns == 0:
        call = {"name": "bash", "arguments": {"command": f"mkdir -p out && echo {tid} > out/{tid}.txt"}}
    else:
        call = {"name": "submit", "arguments": {}}
    reply: dict[str, Any] = {"tool_calls": [call]}
    if sleep:
        reply["sleep"] = sleep
    return reply


def fingerprint(repo: Path) -> dict[str, Any]:
    """Every file in the checkout (not .git) hashed, plus status, HEAD, index and stash list."""
    files = {}
    for p in sorted(repo.rglob("*")):
        if p.is_file() and ".git" not in p.relative_to(repo).parts:
            files[str(p.relative_to(repo))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"files": files, "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
            "head": git(repo, "rev-parse", "HEAD"), "symbolic": git(repo, "symbolic-ref", "HEAD"),
            "stash": git(repo, "stash", "list"),
            "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()}


def nightowl_branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/nightowl/").split()
