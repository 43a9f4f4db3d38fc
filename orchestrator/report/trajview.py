"""A trajectory file reduced to what the report shows: the conversation, per-step timings and the patch.

Read as plain JSON (not the pydantic model) so that older or half-written trajectories still show; a newer format
is refused.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.file_format import NewerFormatError
from agent.trajectory import TRAJECTORY_NAME, read_trajectory_data
from orchestrator.shift.dashboard import fmt_duration


class TrajectoryStats(BaseModel):
    exit_status: str = "unknown"
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    duration_s: float | None = None
    model_s: float = 0.0
    step_tokens: list[tuple[float, int, int]] = Field(default_factory=list)
    """(Unix time a model call ended, its prompt + completion tokens, its completion tokens): for tokens/s."""


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content, ensure_ascii=False)


def pretty_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return json.dumps(arguments, indent=1, ensure_ascii=False)


def unix(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None


def reasoning_of(message: dict[str, Any], step: dict[str, Any] | None) -> Any:
    """The model's reasoning: on the message, else in the raw response the step kept (the history drops it)."""
    found = message.get("reasoning_content") or message.get("reasoning")
    if found or step is None:
        return found
    choices = (step.get("raw_response") or {}).get("choices") or [{}]
    raw = choices[0].get("message") or {} if isinstance(choices[0], dict) else {}
    return raw.get("reasoning_content") or raw.get("reasoning")


def view_message(message: dict[str, Any], step: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": str(message.get("role", "?")), "content": text_of(message.get("content"))}
    reasoning = reasoning_of(message, step)
    if reasoning:
        out["reasoning"] = text_of(reasoning)
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {} if isinstance(call, dict) else {}
        calls.append({"name": str(fn.get("name", "?")), "arguments": pretty_arguments(fn.get("arguments"))})
    if calls:
        out["tool_calls"] = calls
    if message.get("name"):
        out["name"] = str(message["name"])
    return out


def view_messages(messages: list[Any], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each assistant message is paired with its step record (the n-th assistant turn is step n)."""
    out, turn = [], 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        step = None
        if m.get("role") == "assistant":
            step = steps[turn] if turn < len(steps) else None
            turn += 1
        out.append(view_message(m, step))
    return out


def view_step(step: dict[str, Any]) -> dict[str, Any]:
    usage = step.get("usage") or {}
    return {"index": step.get("index"), "model_s": step.get("model_duration_s"),
            "tools_s": step.get("tools_duration_s"),
            "tokens": usage.get("total_tokens"), "parse_source": step.get("parse_source"),
            "parse_errors": [str(e) for e in step.get("parse_errors") or []],
            "exit_codes": [e.get("exit_code") for e in step.get("executions") or []]}


def load_view(path: Path) -> tuple[dict[str, Any], TrajectoryStats]:
    """The data the page renders on click, and the numbers the table and plots use. Raises OSError/ValueError."""
    data = read_trajectory_data(path, undecodable="replace")
    steps = [s for s in data.get("steps") or [] if isinstance(s, dict)]
    usage = data.get("usage") or {}
    started, finished = unix(data.get("started_at")), unix(data.get("finished_at"))
    step_tokens = []
    for s in steps:
        t = unix(s.get("started_at"))
        if t is not None:
            usage_s = s.get("usage") or {}
            step_tokens.append((t + float(s.get("model_duration_s") or 0), int(usage_s.get("total_tokens") or 0),
                                int(usage_s.get("completion_tokens") or 0)))
    stats = TrajectoryStats(
        exit_status=str(data.get("exit_status", "unknown")), steps=len(steps),
        prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=int(usage.get("completion_tokens") or 0),
        total_tokens=int(usage.get("total_tokens") or 0),
        duration_s=finished - started if started and finished else None,
        model_s=sum(float(s.get("model_duration_s") or 0) for s in steps), step_tokens=step_tokens)
    view = {"run_id": str(data.get("run_id", "")), "task": str(data.get("task", "")),
            "model": str(data.get("model", "")),
            "exit_status": stats.exit_status, "exit_message": str(data.get("exit_message", "")),
            "base_commit": str(data.get("base_commit", "")), "sandbox": data.get("sandbox") or {},
            "usage": usage, "messages": view_messages(data.get("messages") or [], steps),
            "steps": [view_step(s) for s in steps], "patch": str(data.get("patch") or "")}
    return view, stats


class Trajectories:
    """Loads trajectories for a section's rows, each once, under short keys the page looks up on click."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.views: dict[str, dict[str, Any]] = {}
        self.stats: list[TrajectoryStats] = []

    def add(self, label: str, run_dir: Path | None, patch: str | None = None
            ) -> tuple[dict[str, Any], TrajectoryStats | None]:
        """A row's View (as a dict) for the run directory, and its numbers when the trajectory was readable."""
        if run_dir is None:
            return {"label": label, "missing": "no run directory recorded", "patch": patch}, None
        path = run_dir / TRAJECTORY_NAME if run_dir.suffix != ".json" else run_dir
        try:
            view, stats = load_view(path)
        except FileNotFoundError:
            return {"label": label, "missing": f"no trajectory at {path}", "patch": patch}, None
        except NewerFormatError:
            raise
        except (OSError, ValueError) as e:
            return {"label": label, "missing": f"unreadable trajectory {path}: {e}", "patch": patch}, None
        ref = f"{self.prefix}{len(self.views)}"
        self.views[ref] = view
        self.stats.append(stats)
        return {"label": label, "ref": ref, "patch": patch if patch and not view["patch"] else None}, stats


def usage_lines(stats: list[TrajectoryStats], usd_per_mtok: tuple[float, float] | None) -> list[tuple[str, str]]:
    """Token and cost lines of a summary, summed over the trajectories that could be read."""
    prompt = sum(s.prompt_tokens for s in stats)
    completion = sum(s.completion_tokens for s in stats)
    model_s = sum(s.model_s for s in stats)
    lines = [("tokens", f"{prompt + completion:,}"), ("prompt / completion tokens", f"{prompt:,} / {completion:,}"),
             ("time waiting on the model", duration(model_s))]
    if usd_per_mtok:
        cost = prompt / 1e6 * usd_per_mtok[0] + completion / 1e6 * usd_per_mtok[1]
        lines.append(("cost", f"${cost:,.4f} (at ${usd_per_mtok[0]:g} / ${usd_per_mtok[1]:g} per million prompt / "
                              "completion tokens)"))
    else:
        lines.append(("cost", "not priced (give --usd-per-mtok PROMPT[,COMPLETION])"))
    return lines


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{max(0.0, seconds):.1f} s" if seconds < 60 else fmt_duration(seconds)
