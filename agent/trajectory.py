"""The trajectory: exactly what the model saw and did, plus everything measured around it.

`messages` and `tools` are byte-for-byte what was sent to the model (OpenAI chat format), ending with the
last assistant turn, so a trajectory is a training row as it stands. Everything else sits beside them.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.file_format import FileFormat, FileFormatError

TRAJECTORY_NAME = "trajectory.json"
PATCH_NAME = "patch.diff"
"""Beside the trajectory in every run directory: the patch's exact bytes."""
TRAJECTORY_FILE = FileFormat("trajectory", 1)
"""The one definition of the trajectory format's version (trajectory.json in every run directory)."""
TRAJECTORY_FORMAT = TRAJECTORY_FILE.tag


class ExitStatus(str, Enum):
    running = "running"
    submitted = "submitted"
    max_steps = "max_steps"
    wall_time = "wall_time"
    token_budget = "token_budget"
    context_exceeded = "context_exceeded"
    format_error = "format_error"
    stuck = "stuck"
    model_error = "model_error"
    sandbox_error = "sandbox_error"
    interrupted = "interrupted"
    internal_error = "internal_error"
    """A bug in nightowl ended the run; the traceback is in the log of whoever ran it."""


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens,
                     total_tokens=self.total_tokens + other.total_tokens)


class ToolExecution(BaseModel):
    call_id: str
    tool: str
    arguments: dict[str, Any] | None = None
    observation: str
    exit_code: int | None = None
    error: str | None = None
    rejected: bool = Field(default=False, exclude=True)
    """(Not stored: `error` and `parse_failures` are.) The call never reached a tool (unparseable arguments, unknown
    tool, arguments failing the schema)."""
    duration_s: float = 0.0


class StepRecord(BaseModel):
    index: int
    started_at: str
    model_duration_s: float
    usage: Usage
    raw_response: dict[str, Any]
    parse_source: str
    """native | hermes | xml | fenced | bare_json | fenced_bash | none (agent/parsing.py)"""
    recovered: str | None = None
    """The reply text the calls were parsed from when they were not native `tool_calls` (the history holds them
    re-expressed as `tool_calls`)."""
    parse_errors: list[str] = Field(default_factory=list)
    executions: list[ToolExecution] = Field(default_factory=list)
    tools_duration_s: float = 0.0


class Trajectory(BaseModel):
    format: str = TRAJECTORY_FORMAT
    run_id: str
    task: str
    repo: str
    base_commit: str
    model: str
    base_url: str
    settings: dict[str, Any]
    sandbox: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    exit_status: ExitStatus = ExitStatus.running
    exit_message: str = ""
    patch: str = ""
    """The patch as text (bytes that are not UTF-8 shown as U+FFFD); patch.diff beside it holds the exact bytes."""
    left_out: list[dict[str, str]] = Field(default_factory=list)
    """Paths kept out of the patch and the branch, each {"path", "reason"}: symlinks leading outside the
    repository, special files (sandbox/safe_patch.py)."""
    usage: Usage = Field(default_factory=Usage)
    parse_failures: int = 0
    started_at: str = Field(default_factory=lambda: now_iso())
    finished_at: str | None = None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def write_text_atomic(path: Path, data: str, durable: bool = True) -> None:
    write_bytes_atomic(path, data.encode("utf-8"), durable)


def write_bytes_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write via a temp file in the same directory + rename: a reader never sees a torn file. `durable` adds an
    fsync first, so the file also survives a power loss (a killed process needs only the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_trajectory(trajectory: Trajectory, path: Path) -> None:
    """Rewritten after every step; synced to disk once the run has ended (the steps before are progress, and a
    crash of the machine ends the run anyway)."""
    write_text_atomic(path, trajectory.model_dump_json(indent=1), durable=trajectory.exit_status != ExitStatus.running)


def load_trajectory(path: Path) -> Trajectory:
    """The typed trajectory; a newer or foreign format is refused (FileFormatError), a torn file is a ValueError."""
    return Trajectory.model_validate(read_trajectory_data(path))


def read_trajectory_data(path: Path, undecodable: str = "strict") -> dict[str, Any]:
    """The trajectory as plain JSON, for readers that must take what the typed model would refuse: half-written
    runs and older fields. `undecodable="replace"` shows bytes that are not UTF-8 as U+FFFD instead of failing.
    A newer or foreign format is refused (FileFormatError); a missing or torn file raises OSError / ValueError."""
    data = json.loads(Path(path).read_bytes().decode("utf-8", errors=undecodable))
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} is not a nightowl trajectory file (it holds no JSON object)")
    TRAJECTORY_FILE.version_of(data, path)
    return data


def read_run_trajectory(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's trajectory as plain JSON (read_trajectory_data); None when the run left none."""
    path = Path(run_dir) / TRAJECTORY_NAME
    return read_trajectory_data(path) if path.is_file() else None
