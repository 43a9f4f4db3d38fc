"""The agent's tools: `bash`, `str_replace_editor` and `submit`, dispatched by name.

A call with an unknown name or bad arguments becomes an observation telling the model what was wrong.
"""
from __future__ import annotations

import time

from pydantic import ValidationError

from agent.parsing import ToolCall
from agent.tools.editor import Editor, ToolError
from agent.tools.output import clip_middle
from agent.tools.specs import ARGUMENT_MODELS, TOOL_SPECS, BashArgs, EditorArgs
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


class ToolBox:
    def __init__(self, sandbox: Sandbox, command_timeout_s: float, observation_cap: int):
        self.sandbox = sandbox
        self.editor = Editor(sandbox)
        self.command_timeout_s = command_timeout_s
        self.observation_cap = observation_cap
        self.submit_calls = 0
        self.specs = TOOL_SPECS

    @property
    def submitted(self) -> bool:
        return self.submit_calls >= 2

    def execute(self, call: ToolCall) -> ToolExecution:
        start = time.monotonic()
        exit_code, error = None, None
        try:
            if call.error:
                raise ToolError(f"Your call to `{call.name}` could not be parsed: {call.error}. "
                                f"Received: {call.raw_arguments[:500]}")
            model = ARGUMENT_MODELS.get(call.name)
            if model is None:
                raise ToolError(f"Unknown tool `{call.name}`. The available tools are: "
                                f"{', '.join(ARGUMENT_MODELS)}.")
            args = model.model_validate(call.arguments or {})
            if isinstance(args, BashArgs):
                observation, exit_code = self.bash(args.command)
            elif isinstance(args, EditorArgs):
                observation = self.editor(args)
            else:
                observation = self.submit()
        except ValidationError as e:
            error = observation = f"Invalid arguments for `{call.name}`: " + "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors())
        except ToolError as e:
            error = observation = str(e)
        return ToolExecution(call_id=call.id, tool=call.name, arguments=call.arguments,
                             observation=clip_middle(observation, self.observation_cap), exit_code=exit_code,
                             error=error, duration_s=time.monotonic() - start)

    def bash(self, command: str) -> tuple[str, int | None]:
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
        diff = self.sandbox.diff()
        if self.submit_calls == 1:
            return REVIEW_MESSAGE.format(diff=diff)
        return "Submitted. The diff below is your final answer.\n\n" + diff


__all__ = ["ToolBox", "TOOL_SPECS", "ToolError", "clip_middle"]
