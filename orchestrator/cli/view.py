"""Rendering a trajectory readably in the terminal (`nightowl show`)."""
from __future__ import annotations

import json

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from agent.trajectory import Trajectory

ROLE_STYLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "yellow"}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + f"\n… [{len(text) - limit} chars] …\n" + text[-limit // 2:]


def show_trajectory(traj: Trajectory, console: Console, full: bool = False) -> None:
    limit = 10**9 if full else 2000
    console.print(Panel(Group(
        Text(f"run {traj.run_id}   exit: {traj.exit_status.value}   steps: {len(traj.steps)}   "
             f"tokens: {traj.usage.total_tokens}   parse failures: {traj.parse_failures}", style="bold"),
        Text(f"repo {traj.repo} @ {traj.base_commit[:12]}   model {traj.model} ({traj.base_url})"),
        Text(f"sandbox: {', '.join(f'{k}={v}' for k, v in traj.sandbox.items())}", style="dim"),
        Text(traj.exit_message, style="italic"),
    ), title="nightowl trajectory"))
    for message in traj.messages:
        role = message["role"]
        parts = []
        if message.get("content"):
            parts.append(Text(clip(str(message["content"]), limit)))
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            try:
                args = json.dumps(json.loads(fn["arguments"]), indent=1, ensure_ascii=False)
            except (json.JSONDecodeError, TypeError):
                args = str(fn["arguments"])
            parts.append(Text(f"→ {fn['name']}", style="bold magenta"))
            parts.append(Syntax(clip(args, limit), "json", word_wrap=True))
        console.print(Panel(Group(*parts) if parts else Text("(empty)"), title=role,
                            border_style=ROLE_STYLE.get(role, "white"), title_align="left"))
    if traj.patch:
        console.print(Panel(Syntax(clip(traj.patch, limit * 4), "diff", word_wrap=True), title="patch"))
