"""Builders for export inputs: trajectories, shift directories (runs/<task>.<n>/) and generate directories."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
GOLDEN_TRAJECTORY = Path(__file__).parents[1] / "agent" / "data" / "trajectory-v1.json"

TOOLS = [{"type": "function", "function": {
    "name": "bash", "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "submit", "description": "Finish.", "parameters": {"type": "object", "properties": {}}}}]


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def conversation(task: str, turns: int = 2, observation: str = "ok", reasoning: str | None = None
                 ) -> list[dict[str, Any]]:
    """system, user, then `turns` assistant/tool pairs; the last assistant turn submits."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful engineer."},
                                      {"role": "user", "content": f"<task>\n{task}\n</task>"}]
    for i in range(turns):
        last = i == turns - 1
        assistant: dict[str, Any] = {
            "role": "assistant", "content": f"Step {i} of {task}.",
            "tool_calls": [call(f"call_{i}", "submit", "{}") if last
                           else call(f"call_{i}", "bash", json.dumps({"command": f"echo {i}"}))]}
        if reasoning is not None:
            assistant["reasoning_content"] = f"{reasoning} {i}"
        messages += [assistant, {"role": "tool", "tool_call_id": f"call_{i}", "content": f"{observation} {i}"}]
    return messages


def trajectory(messages: list[dict[str, Any]], run_id: str, exit_status: str = "submitted",
               patch: str = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", tools=None) -> dict:
    return {"format": "nightowl.trajectory/1", "run_id": run_id, "task": "t", "repo": "/repos/demo",
            "base_commit": "0" * 40, "model": "tiny", "base_url": "http://127.0.0.1:1/v1", "settings": {},
            "sandbox": {}, "tools": tools if tools is not None else TOOLS, "messages": messages, "steps": [],
            "exit_status": exit_status, "exit_message": "", "patch": patch, "usage": {}, "parse_failures": 0,
            "started_at": "2026-11-23T00:00:00+00:00", "finished_at": None}


def write_run(run_dir: Path, traj: dict) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "trajectory.json").write_text(json.dumps(traj, indent=1), encoding="utf-8")
    return run_dir


def make_shift(root: Path, tasks: dict[str, list[dict]]) -> Path:
    """tasks: task id -> trajectories of its attempts (run dirs <id>.1, <id>.2, ...)."""
    for task_id, attempts in tasks.items():
        for n, traj in enumerate(attempts, 1):
            write_run(root / "runs" / f"{task_id}.{n}", {**traj, "run_id": f"{task_id}.{n}"})
    (root / "shift.sqlite").write_bytes(b"not for export to read")
    return root


def make_generate(root: Path, samples: list[dict[str, Any]]) -> Path:
    """samples: {"id", "recall", "t1": trajectory, "t2": trajectory or None}; run dirs relative to root."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in samples:
        row = {"id": s["id"], "commit": "1" * 40, "file": "calc.py", "function": "add", "language": "python",
               "category": "edge cases", "pr": "add() is wrong", "recall": s.get("recall"), "matched": 1, "total": 2,
               "t1_patch": "", "t2_patch": "", "t1_run_dir": f"runs/{s['id']}-t1", "t2_run_dir": None}
        write_run(root / row["t1_run_dir"], s["t1"])
        if s.get("t2") is not None:
            row["t2_run_dir"] = f"runs/{s['id']}-t2"
            write_run(root / row["t2_run_dir"], s["t2"])
        lines.append(json.dumps(row))
    (root / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
