"""Scripted agent behaviours for tests: replies chosen by how many assistant turns the request holds."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

ROOT_PATTERN = re.compile(r"checked out at (\S+) and commands")


def repo_root(request: dict[str, Any]) -> str:
    for message in request["messages"]:
        if message["role"] == "user" and (m := ROOT_PATTERN.search(message["content"] or "")):
            return m.group(1)
    raise AssertionError("no repository root in the task prompt")


def native(name: str, **arguments: Any) -> dict[str, Any]:
    return {"content": f"Calling {name}.", "tool_calls": [{"name": name, "arguments": arguments}]}


def hermes(name: str, **arguments: Any) -> dict[str, Any]:
    body = json.dumps({"name": name, "arguments": arguments})
    return {"content": f"Let me call {name}.\n<tool_call>\n{body}\n</tool_call>"}


def by_turn(steps: list[Callable[[str], dict[str, Any]]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A responder: step k answers the request that already holds k assistant turns."""
    def respond(request: dict[str, Any]) -> dict[str, Any]:
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        if turn >= len(steps):
            return {"content": "I have nothing more to do."}
        return steps[turn](repo_root(request))
    return respond


def fix_the_bug(call: Callable[..., dict[str, Any]] = native) -> list[Callable[[str], dict[str, Any]]]:
    return [
        lambda root: call("bash", command="cat calc.py"),
        lambda root: call("str_replace_editor", command="str_replace", path=f"{root}/calc.py",
                          old_str="    return a - b", new_str="    return a + b"),
        lambda root: call("bash", command="python3 -c 'from calc import add; assert add(2, 3) == 5; print(\"tests pass\")'"),
        lambda root: call("submit"),
        lambda root: call("submit"),
    ]
