"""The agent's tools, by registry: each entry is a name, a description, an argument model and a handler.

The schema the model sees is derived from the argument model, and a call reaches only the handler
registered under its name, so a new tool is one `Tool` entry. A call that never reaches a tool (its
arguments could not be parsed, the tool is unknown, the arguments fail the schema) is `rejected`: that is
what counts as a format error. A tool that ran and reported an error is an ordinary observation.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.parsing import ToolCall
from agent.tools.editor import Editor, ToolError
from agent.tools.output import clip_middle
from agent.tools.specs import (BASH_DESCRIPTION, EDITOR_DESCRIPTION, SUBMIT_DESCRIPTION, BashArgs, EditorArgs,
                               SubmitArgs, function_spec)
from agent.trajectory import ToolExecution
from sandbox.base import Sandbox

REVIEW_MESSAGE = """Before this is final, review your change:
1. If you wrote a script to reproduce the problem, run it again and confirm the problem is gone.
2. Delete any reproduction or scratch files you created, unless the task asked for them.
3. If you changed existing tests, make sure that was intended; revert test changes that only made a failure disappear.
4. Call `submit` again to finalise. The current diff is below.

<diff>
{diff}
</diff>"""

Result = tuple[str, int | None]
"""(observation, exit code or None)"""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[BaseModel]
    run: Callable[["ToolBox", Any], Result]

    @property
    def spec(self) -> dict[str, Any]:
        return function_spec(self.name, self.description, self.arguments)


DEFAULT_TOOLS: tuple[Tool, ...] = (
    Tool("bash", BASH_DESCRIPTION, BashArgs, lambda box, args: box.bash(args.command)),
    Tool("str_replace_editor", EDITOR_DESCRIPTION, EditorArgs, lambda box, args: (box.editor(args), None)),
    Tool("submit", SUBMIT_DESCRIPTION, SubmitArgs, lambda box, args: (box.submit(), None)),
)
TOOL_SPECS = [tool.spec for tool in DEFAULT_TOOLS]


class Rejected(ToolError):
    """The call never reached a tool."""


class ToolBox:
    def __init__(self, sandbox: Sandbox, command_timeout_s: float, observation_cap: int,
                 tools: Sequence[Tool] = DEFAULT_TOOLS):
        self.sandbox = sandbox
        self.editor = Editor(sandbox, view_cap=observation_cap)
        self.command_timeout_s = command_timeout_s
        self.observation_cap = observation_cap
        self.submit_calls = 0
        self.registry = {tool.name: tool for tool in tools}
        self.specs = [tool.spec for tool in tools]

    @property
    def submitted(self) -> bool:
        return self.submit_calls >= 2

    def execute(self, call: ToolCall) -> ToolExecution:
        start = time.monotonic()
        exit_code, error, rejected = None, None, False
        try:
            tool = self.dispatch(call)
            try:
                args = tool.arguments.model_validate(call.arguments or {})
            except ValidationError as e:
                raise Rejected(f"Invalid arguments for `{call.name}`: " + "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors()))
            observation, exit_code = tool.run(self, args)
        except ToolError as e:
            error = observation = str(e)
            rejected = isinstance(e, Rejected)
        return ToolExecution(call_id=call.id, tool=call.name, arguments=call.arguments,
                             observation=clip_middle(observation, self.observation_cap), exit_code=exit_code,
                             error=error, rejected=rejected, duration_s=time.monotonic() - start)

    def dispatch(self, call: ToolCall) -> Tool:
        if call.error:
            raise Rejected(f"Your call to `{call.name}` could not be parsed: {call.error}. "
                           f"Received: {call.raw_arguments[:500]}")
        tool = self.registry.get(call.name)
        if tool is None:
            raise Rejected(f"Unknown tool `{call.name}`. The available tools are: {', '.join(self.registry)}.")
        return tool

    def bash(self, command: str) -> Result:
        if not command.strip():
            raise ToolError("The `command` parameter is empty. Give a bash command to run.")
        result = self.sandbox.execute(command, timeout=self.command_timeout_s)
        output = result.output
        if result.timed_out:
            return (f"The command took longer than {self.command_timeout_s:g} seconds and was killed "
                    f"(with everything it started). Output before it was killed:\n{output}"), None
        if not output.strip():
            output = "Your command ran successfully and did not produce any output."
        return output, result.returncode

    def submit(self) -> str:
        self.submit_calls += 1
        diff = self.sandbox.diff().decode(errors="replace")
        if self.submit_calls == 1:
            return REVIEW_MESSAGE.format(diff=diff)
        return "Submitted. The diff below is your final answer.\n\n" + diff


__all__ = ["DEFAULT_TOOLS", "TOOL_SPECS", "Tool", "ToolBox", "ToolError", "clip_middle"]
