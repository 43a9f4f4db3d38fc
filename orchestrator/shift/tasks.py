"""Where a shift's tasks come from: a tasks file (YAML list or JSONL), or any `TaskSource` plug-in."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import UsageError
from training.evaluation.benchmark import TestCheck

TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1)
    id: str | None = None
    max_steps: int | None = Field(default=None, gt=0)
    commit: str = "HEAD"
    reference_patch: str | None = None
    """Benchmark tasks (`bench-history`): the change that was made; `eval` measures recall against it."""
    tests: TestCheck | None = None
    source_commit: str | None = None
    repo: str | None = None
    committed_at: str | None = None
    holdout_since: str | None = None

    @field_validator("task")
    @classmethod
    def not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the task text is empty")
        return v

    @field_validator("id")
    @classmethod
    def branch_safe(cls, v: str | None) -> str | None:
        if v is not None and (not TASK_ID.match(v) or v.endswith(".lock") or ".." in v):
            raise ValueError(f"id {v!r} must be letters, digits, '.', '_' or '-' (it names the branch nightowl/<id>)")
        return v


@runtime_checkable
class TaskSource(Protocol):
    """A plug-in that feeds tasks into a running shift (e.g. synthetic task generation).

    `next_tasks` is called whenever the queue runs low; it returns up to `limit` new tasks (each with an
    `id` unique within the shift), and an empty list once it has nothing more to give.
    """
    name: str

    def next_tasks(self, limit: int) -> list[TaskSpec]: ...


class StaticTaskSource:
    def __init__(self, tasks: list[TaskSpec], name: str):
        self.tasks, self.name = list(tasks), name

    def next_tasks(self, limit: int) -> list[TaskSpec]:
        batch, self.tasks = self.tasks[:limit], self.tasks[limit:]
        return batch


def _error(path: Path, where: str, e: ValidationError | str) -> UsageError:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "entry"
        e = f"{field}: {first['msg']}"
    return UsageError(f"{path}: {where}: {e}")


def yaml_position(e: yaml.YAMLError) -> tuple[str, str]:
    """Where the parser says the problem is: the construct it was reading (a quote left open on line 2 is
    reported there, not at the end of the file where the scanner gave up), and the parser's own words."""
    context, problem = getattr(e, "context_mark", None), getattr(e, "problem_mark", None)
    mark = context or problem
    if mark is None:
        return "YAML", f"not valid YAML ({e})"
    words = "; ".join(str(w) for w in (getattr(e, "context", None), getattr(e, "problem", None)) if w)
    return f"line {mark.line + 1}, column {mark.column + 1}", f"not valid YAML: {words or e}"


def load_tasks_file(path: Path) -> list[TaskSpec]:
    """Reads and validates a tasks file; errors name the line (JSONL) or entry (YAML). Ids default to task-NNNN."""
    if not path.is_file():
        raise UsageError(f"tasks file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    raw: list[tuple[str, object]] = []
    if path.suffix in (".jsonl", ".ndjson") or (text.lstrip().startswith("{") and path.suffix not in (".yaml", ".yml")):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise _error(path, f"line {n}", f"not valid JSON ({e.msg})") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise _error(path, *yaml_position(e)) from None
        if not isinstance(data, list):
            raise UsageError(f"{path}: expected a YAML list of tasks (or JSONL, one object per line)")
        raw = [(f"entry {i}", item) for i, item in enumerate(data, 1)]
    specs: list[TaskSpec] = []
    seen: dict[str, str] = {}
    for i, (where, item) in enumerate(raw, 1):
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict):
            raise _error(path, where, "expected an object with a `task` field")
        try:
            spec = TaskSpec.model_validate(item)
        except ValidationError as e:
            raise _error(path, where, e) from None
        if spec.id is None:
            spec.id = f"task-{i:04d}"
        if spec.id in seen:
            raise _error(path, where, f"duplicate id {spec.id!r} (also at {seen[spec.id]})")
        seen[spec.id] = where
        specs.append(spec)
    if not specs:
        raise UsageError(f"{path}: no tasks in the file")
    return specs
