"""An instant, deterministic teacher for `nightowl generate` tests and benchmarks (serve it with ScriptedServer).

Rollouts (requests with tools): append a one-line note about the named function to the named file with
`bash`, then `submit` twice. The self-check answers yes; the PR names the file and function so that a T2
rollout makes the same change (recall 1.0). Hooks let a test make it say no, stall or fail.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from agent.scripted_server import Reply
from training.synthesis.svg_prompts import PR_SYSTEM, SELF_CHECK_SYSTEM

TARGET = re.compile(r"near `([^`]+)` in `([^`]+)`")
NOTE = re.compile(r"^\+\s*(?:#|//) note: (\S+) reviewed$", re.MULTILINE)
FILE_HEADER = re.compile(r"^\+\+\+ b/(.+)$", re.MULTILINE)


def request_kind(request: dict[str, Any]) -> str:
    """t1 | t2 | check | pr | other"""
    messages = request.get("messages", [])
    system = str(messages[0].get("content")) if messages else ""
    if not request.get("tools"):
        return "check" if system == SELF_CHECK_SYSTEM else "pr" if system == PR_SYSTEM else "other"
    text = "\n".join(str(m.get("content")) for m in messages if m.get("role") == "user")
    return "t1" if "suspects a problem around" in text else "t2"


def target_of(request: dict[str, Any]) -> tuple[str, str] | None:
    for m in request.get("messages", []):
        if m.get("role") == "user" and (found := TARGET.search(str(m.get("content")))):
            return found.group(1), found.group(2)
    return None


def note_command(function: str, file: str) -> str:
    marker = "#" if file.endswith(".py") else "//"
    return f"printf '%s\\n' {shlex.quote(f'{marker} note: {function} reviewed')} >> {shlex.quote(file)}"


def call(name: str, **arguments: Any) -> Reply:
    return {"content": f"Calling {name}.", "tool_calls": [{"name": name, "arguments": arguments}]}


def rollout_reply(request: dict[str, Any]) -> Reply:
    turn = sum(1 for m in request.get("messages", []) if m.get("role") == "assistant")
    target = target_of(request)
    if target is None:
        return call("submit")
    if turn == 0:
        return call("bash", command=note_command(*target))
    return call("submit")


def pr_reply(request: dict[str, Any]) -> Reply:
    prompt = str(request["messages"][-1].get("content"))
    function = NOTE.search(prompt)
    file = FILE_HEADER.search(prompt)
    if not function or not file:
        return {"content": "<output>Something is off in this project.</output>"}
    return {"content": f"<output>The code near `{function.group(1)}` in `{file.group(1)}` has no review note; "
                       "add one at the end of that file.</output>"}


def teacher(request: dict[str, Any]) -> Reply:
    kind = request_kind(request)
    if kind == "check":
        return {"content": "The change is about the named code. <output>yes</output>"}
    if kind == "pr":
        return pr_reply(request)
    return rollout_reply(request)
