"""The agent's tools, by registry: each entry is a name, a description, an argument model and a handler.

The schema the model sees is derived from the argument model, and a call reaches only the handler
registered under its name, so a new tool is one `Tool` entry. A call that never reaches a tool (its
arguments could not be parsed, the tool is unknown, the arguments fail the schema) is `rejected`: that is
what counts as a format error. A tool that ran and reported an error is an ordinary observation.

`bash` runs in one persistent shell session per rollout (sandbox/shell.py) or, in `stateless` mode, in a fresh
shell per call; its description says which. Its observation is the output as SWE-agent shows it (exit codes are
recorded on the step, not printed), made tokenizer-clean and clipped with true counts (tools/output.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.parsing import ToolCall
from agent.tools.editor import Editor, ToolError
from agent.tools.output import clip_middle, clip_parts, describe_binary, looks_binary_text, terminal_text
from agent.tools.specs import (
    EDITOR_DESCRIPTION,
    SUBMIT_DESCRIPTION,
    BashArgs,
    EditorArgs,
    ShellMode,
    SubmitArgs,
    bash_description,
    function_spec,
)
from agent.trajectory import ToolExecution
from sandbox.base import CommandResult, Sandbox
from sandbox.safe_patch import describe_left_out, safe_patch
from sandbox.shell import ShellSession

REVIEW_MESSAGE = """Before this is final, review your change:
1. If you wrote a script to reproduce the problem, run it again and confirm the problem is gone.
2. Delete any reproduction or scratch files you created, unless the task asked for them.
3. If you changed existing tests, make sure that was intended; revert test changes that only made a failure disappear.
4. Call `submit` again to finalise. The current diff is below.{left_out}

<diff>
{diff}
</diff>"""
LEFT_OUT_NOTE = ("\n\nThese paths are left out of your change (symlinks leading outside the repository and special "
                 "files never reach the result): {paths}.")
SECOND_SUBMIT = ("This `submit` was not executed: `submit` was already called in this reply. Read its answer above; "
                 "to finish, call `submit` again in your next reply.")
AFTER_FINAL_SUBMIT = "This call was not executed: you already submitted, and the task is over."
NO_OUTPUT = "Your command ran successfully and did not produce any output."
NO_OUTPUT_FAILED = "Your command did not produce any output and exited with code {code}."
BINARY_OUTPUT = ("The output is binary data ({description}), so it is not shown. To look at it, pipe it through "
                 "`od -c | head`, or write it to a file and inspect that.")
TIMEOUT = {
    "stateless": ("The command took longer than {timeout:g} seconds and was killed (with everything it started). "
                  "Output before it was killed:\n"),
    "interrupted": ("The command took longer than {timeout:g} seconds and was interrupted (as with Ctrl-C); the shell "
                    "session carries on. Output before it was interrupted:\n"),
    "restarted": ("The command took longer than {timeout:g} seconds and could not be interrupted, so the shell was "
                  "killed and a new shell session started in {root} (the working directory, variables and background "
                  "processes were reset). Output before it was killed:\n"),
}
SHELL_EXITED = ("\n\nThe command exited the shell (exit code {code}). A new shell session was started in {root}: "
                "the working directory, variables and activated environments were reset.")
SHELL_DIED = ("The shell session ended unexpectedly (if that happened while this command ran, it did not finish) "
              "and a new one was started in {root}: the working directory, variables, activated environments and "
              "background processes were reset.\n")

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


def default_tools(shell: ShellMode = "persistent") -> tuple[Tool, ...]:
    return (
        Tool("bash", bash_description(shell), BashArgs, lambda box, args: box.bash(args.command)),
        Tool("str_replace_editor", EDITOR_DESCRIPTION, EditorArgs, lambda box, args: (box.editor(args), None)),
        Tool("submit", SUBMIT_DESCRIPTION, SubmitArgs, lambda box, args: (box.submit(), None)),
    )


DEFAULT_TOOLS = default_tools()
TOOL_SPECS = [tool.spec for tool in DEFAULT_TOOLS]


class Rejected(ToolError):
    """The call never reached a tool."""


class ToolBox:
    def __init__(self, sandbox: Sandbox, command_timeout_s: float, observation_cap: int,
                 tools: Sequence[Tool] | None = None, shell: ShellMode = "persistent"):
        """`tools`: default_tools(shell) unless given (whose `bash` description must then match `shell`)."""
        self.sandbox = sandbox
        self.editor = Editor(sandbox, view_cap=observation_cap)
        self.command_timeout_s = command_timeout_s
        self.observation_cap = observation_cap
        self.shell_mode = shell
        self.session: ShellSession | None = None
        self.submit_calls = 0
        self.submitted_in_reply = False
        tools = default_tools(shell) if tools is None else tools
        self.registry = {tool.name: tool for tool in tools}
        self.specs = [tool.spec for tool in tools]

    @property
    def submitted(self) -> bool:
        return self.submit_calls >= 2

    def begin_reply(self) -> None:
        """The calls that follow come from one new model reply."""
        self.submitted_in_reply = False

    def execute(self, call: ToolCall) -> ToolExecution:
        start = time.monotonic()
        exit_code, error, rejected = None, None, False
        try:
            tool = self.dispatch(call)
            try:
                args = tool.arguments.model_validate(call.arguments or {})
            except ValidationError as e:
                raise Rejected(f"Invalid arguments for `{call.name}`: " + "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors())
                ) from None
            if self.submitted:  # a call after the final submit in the same reply: the result is fixed
                raise ToolError(AFTER_FINAL_SUBMIT)
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
        if self.shell_mode == "stateless":
            result = self.sandbox.execute(command, timeout=self.command_timeout_s)
        else:
            if self.session is None:
                self.session = self.sandbox.open_shell()
            result = self.session.run(command, timeout=self.command_timeout_s)
        return self.command_observation(result), result.returncode

    def command_observation(self, result: CommandResult) -> str:
        root = self.sandbox.root
        before = after = ""
        if result.timed_out:
            kind = ("stateless" if self.shell_mode == "stateless" else
                    "restarted" if result.shell_restarted == "timeout" else "interrupted")
            before = TIMEOUT[kind].format(timeout=self.command_timeout_s, root=root)
        elif result.shell_restarted == "exit":
            after = SHELL_EXITED.format(code=result.returncode, root=root)
        elif result.shell_restarted == "died":
            before = SHELL_DIED.format(root=root)
        head, tail = result.head_and_tail()
        if looks_binary_text(head + tail):
            size = result.output_bytes or len(head.encode()) + result.clipped_bytes + len(tail.encode())
            body = BINARY_OUTPUT.format(description=describe_binary(size, head[:300].encode("latin-1", "replace")))
        else:
            budget = max(1000, self.observation_cap - len(before) - len(after))
            body = clip_parts(terminal_text(head), terminal_text(tail), budget, result.clipped_chars,
                              result.clipped_lines)
        if not body.strip() and not before and not after:
            body = NO_OUTPUT if result.returncode == 0 else NO_OUTPUT_FAILED.format(code=result.returncode)
        return before + body + after

    def reviewed_diff(self) -> tuple[str, str]:
        """The workspace's diff as the result will hold it, and a note naming what it leaves out."""
        patch, left_out = safe_patch(self.sandbox.diff(), self.sandbox.host_path(self.sandbox.root))
        note = LEFT_OUT_NOTE.format(paths=describe_left_out(left_out)) if left_out else ""
        return patch.decode(errors="replace"), note

    def submit(self) -> str:
        if self.submitted_in_reply:
            return SECOND_SUBMIT
        self.submitted_in_reply = True
        self.submit_calls += 1
        diff, note = self.reviewed_diff()
        if self.submit_calls == 1:
            return REVIEW_MESSAGE.format(diff=diff, left_out=note)
        return "Submitted. The diff below is your final answer." + note + "\n\n" + diff

    def close(self) -> None:
        """End the shell session: everything it started, background processes included, is killed."""
        if self.session is not None:
            self.session.close()
            self.session = None


__all__ = ["DEFAULT_TOOLS", "TOOL_SPECS", "Tool", "ToolBox", "ToolError", "clip_middle", "default_tools"]
