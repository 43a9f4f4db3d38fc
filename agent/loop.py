"""The agent loop: query the model, run the tool calls it makes, append what they returned, save.

The message history is append-only and the system prompt holds nothing variable, so every request
shares its whole prefix with the previous one (vLLM's prefix cache then prefills only the new turn).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, field_validator

from agent.model import REASONING_KEY, ContextWindowExceeded, Model, ModelCallFailed
from agent.parsing import ParsedMessage, ToolCall, parse_message
from agent.prompts import render
from agent.tools import ToolBox, default_tools
from agent.tools.specs import ShellMode
from agent.trajectory import ExitStatus, StepRecord, ToolExecution, Trajectory, Usage, now_iso
from sandbox.base import Sandbox, SandboxError
from sandbox.safe_patch import describe_left_out, safe_patch

CHARS_PER_TOKEN_ESTIMATE = 3.0
"""Conservative (code tokenizes at ~3.5-4 chars/token); only used for text not yet counted by the server."""
MIN_COMPLETION_TOKENS = 64

FORMAT_ERROR_MESSAGE = ("Your reply did not contain a tool call that could be used{detail}. Every reply must call "
                        "exactly one of the tools ({tools}) using the tool-calling format.")


class AgentConfig(BaseModel):
    max_steps: int = Field(default=100, gt=0)
    max_wall_s: float = Field(default=3600, gt=0)
    """Wall time of one run (a shift's `--task-timeout`)."""
    command_timeout_s: float = Field(default=300, gt=0)
    max_total_tokens: int | None = Field(default=None, gt=0)
    """Stop once prompt + completion tokens over all calls reach this."""
    context_length: int | None = Field(default=None, gt=0)
    """The model's window; None takes the server's `max_model_len`."""
    observation_cap: int = Field(default=16000, gt=200)
    max_format_errors: int = Field(default=3, gt=0)
    """Consecutive replies without a usable tool call before the run ends with `format_error`."""
    stuck_repeats: int = Field(default=3, gt=1)
    """The same action with the same observation this many times in a row ends the run with `stuck`."""
    shell: ShellMode = "persistent"
    """`persistent`: one bash session per run (cd, variables, venvs carry over; background processes run until the
    end); `stateless`: a fresh shell per command. The `bash` tool's description says which."""
    tools: list[str] = Field(default_factory=lambda: [tool.name for tool in default_tools()])
    """The tools offered, by name, from bash, str_replace_editor and submit (e.g. ["bash", "submit"] for models
    trained bash-only, whose single ```bash block is then understood as a call)."""

    @field_validator("tools")
    @classmethod
    def known_tools(cls, names: list[str]) -> list[str]:
        known = [tool.name for tool in default_tools()]
        if unknown := [n for n in names if n not in known]:
            raise ValueError(f"unknown tools {unknown}; the tools are {known}")
        if not names:
            raise ValueError("at least one tool is needed")
        return names


class Agent:
    def __init__(self, model: Model, sandbox: Sandbox, config: AgentConfig, trajectory: Trajectory,
                 on_step: Callable[[Trajectory], None] = lambda t: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.model, self.sandbox, self.config, self.traj = model, sandbox, config, trajectory
        self.on_step, self.should_stop = on_step, should_stop
        self.tools = ToolBox(sandbox, config.command_timeout_s, config.observation_cap, shell=config.shell,
                             tools=[tool for tool in default_tools(config.shell) if tool.name in config.tools])
        self.format_errors = 0
        self.recent_actions: list[str] = []
        self.started = time.monotonic()
        self.counted_messages = 0
        self.last_usage = Usage()
        self.patch = b""
        """The final patch, byte for byte (the trajectory holds a text view of it)."""

    def run(self) -> Trajectory:
        self.traj.tools = self.tools.specs
        self.traj.messages = [{"role": "system", "content": render("system.j2", tools=list(self.tools.registry))},
                              {"role": "user", "content": render("task.j2", task=self.traj.task,
                                                                 repo_root=self.sandbox.root)}]
        status = None
        while status is None:
            try:
                status = self.step()
            except SandboxError as e:
                status = self.finish(ExitStatus.sandbox_error, str(e))
            except Exception as e:
                # A bug: the trajectory says so (never left `running`), and the caller logs the traceback.
                self.finish(ExitStatus.internal_error, f"internal error: {type(e).__name__}: {e}")
                self.on_step(self.traj)
                raise
            self.on_step(self.traj)
        return self.traj

    def step(self) -> ExitStatus | None:
        if stop := self.limit_reached():
            return stop
        max_tokens = self.completion_budget()
        if max_tokens < min(MIN_COMPLETION_TOKENS, self.model.config.max_tokens):
            return self.finish(ExitStatus.context_exceeded, "the next request would not fit the context window")
        started_at, t0 = now_iso(), time.monotonic()
        try:
            response = self.model.query(self.traj.messages, self.traj.tools, max_tokens=max_tokens)
        except ContextWindowExceeded as e:
            return self.finish(ExitStatus.context_exceeded, str(e))
        except ModelCallFailed as e:
            return self.finish(ExitStatus.model_error, str(e))
        self.last_usage = response.usage
        self.traj.usage = self.traj.usage + response.usage
        parsed = parse_message(response.message, self.traj.tools)
        self.traj.messages.append(history_message(response.message, parsed))
        self.counted_messages = len(self.traj.messages)
        record = StepRecord(index=len(self.traj.steps), started_at=started_at, model_duration_s=time.monotonic() - t0,
                            usage=response.usage, raw_response=response.raw, parse_source=parsed.source,
                            recovered=parsed.recovered, parse_errors=list(parsed.errors))
        self.traj.steps.append(record)

        t1 = time.monotonic()
        self.tools.begin_reply()
        executions = [self.tools.execute(call) for call in parsed.calls]
        record.executions = executions
        record.tools_duration_s = time.monotonic() - t1
        for call, execution in zip(parsed.calls, executions):
            self.traj.messages.append({"role": "tool", "tool_call_id": call.id, "content": execution.observation})

        if all(e.rejected for e in executions):  # no call reached a tool (none, or all malformed)
            self.traj.parse_failures += 1
            self.format_errors += 1
            if not parsed.calls:
                detail = f" ({'; '.join(parsed.errors)})" if parsed.errors else ""
                if response.finish_reason == "length":
                    detail = " (the reply was cut off at the token limit)"
                self.traj.messages.append({"role": "user", "content": FORMAT_ERROR_MESSAGE.format(
                    detail=detail, tools=", ".join(spec["function"]["name"] for spec in self.traj.tools))})
            if self.format_errors >= self.config.max_format_errors:
                return self.finish(ExitStatus.format_error,
                                   f"{self.format_errors} consecutive replies without a usable tool call")
        else:
            self.format_errors = 0
        if self.tools.submitted:
            return self.finish(ExitStatus.submitted, "the agent submitted")
        if self.is_stuck(parsed.calls, executions):
            return self.finish(ExitStatus.stuck, f"the same action and observation {self.config.stuck_repeats} "
                                                 "times in a row")
        return None

    def limit_reached(self) -> ExitStatus | None:
        if self.should_stop():
            return self.finish(ExitStatus.interrupted, "stopped from outside")
        if len(self.traj.steps) >= self.config.max_steps:
            return self.finish(ExitStatus.max_steps, f"reached {self.config.max_steps} steps")
        if time.monotonic() - self.started >= self.config.max_wall_s:
            return self.finish(ExitStatus.wall_time, f"reached {self.config.max_wall_s:g} s of wall time")
        if self.config.max_total_tokens and self.traj.usage.total_tokens >= self.config.max_total_tokens:
            return self.finish(ExitStatus.token_budget, f"used {self.traj.usage.total_tokens} tokens")
        return None

    def completion_budget(self) -> int:
        """Tokens left for the reply: the window minus the prompt (counted by the server where possible)."""
        configured = self.model.config.max_tokens
        window = self.config.context_length
        if not window:
            return configured
        uncounted = self.traj.messages[self.counted_messages:] if self.counted_messages else self.traj.messages
        extra_chars = sum(len(json.dumps(m)) for m in uncounted)
        if not self.counted_messages:
            extra_chars += len(json.dumps(self.traj.tools))
        prompt = self.last_usage.prompt_tokens + self.last_usage.completion_tokens
        estimate = prompt + int(extra_chars / CHARS_PER_TOKEN_ESTIMATE)
        return min(configured, window - estimate)

    def is_stuck(self, calls: list[ToolCall], executions: list[ToolExecution]) -> bool:
        signature = json.dumps([[c.name, c.arguments, e.observation] for c, e in zip(calls, executions)],
                               sort_keys=True, default=str)
        self.recent_actions.append(signature)
        tail = self.recent_actions[-self.config.stuck_repeats:]
        return len(tail) == self.config.stuck_repeats and len(set(tail)) == 1

    def finish(self, status: ExitStatus, message: str) -> ExitStatus:
        self.traj.exit_status, self.traj.exit_message = status, message
        try:
            self.tools.close()  # background processes end before the patch is taken
        except Exception as e:
            self.traj.exit_message += f"; could not close the shell session: {e}"
        try:
            # Symlinks leading outside the repository and special files never reach the patch or the branch.
            patch, left_out = safe_patch(self.sandbox.diff(), self.sandbox.host_path(self.sandbox.root))
            self.patch = patch
            self.traj.patch = self.patch.decode(errors="replace")
            self.traj.left_out = [item.model_dump() for item in left_out]
            if left_out:
                self.traj.exit_message += f"; left out of the patch: {describe_left_out(left_out)}"
        except Exception as e:  # the patch is best effort once the run is over; the status says why it ended
            self.traj.exit_message += f"; could not compute the patch: {e}"
        self.traj.finished_at = now_iso()
        return status


def history_message(message: dict[str, Any], parsed: ParsedMessage) -> dict[str, Any]:
    """The assistant turn as it goes back into the history.

    Text-mode calls are re-expressed as native `tool_calls` (what the chat template renders back as the
    same `<tool_call>` text), and arguments that are not valid JSON are replaced by `{}`: the server
    decodes past arguments to render them and would reject the whole request otherwise. The raw reply is
    kept in the step record. The reply's reasoning stays with it (the model client decides whether it is sent).
    """
    reasoning = {REASONING_KEY: message[REASONING_KEY]} if message.get(REASONING_KEY) else {}
    if not parsed.calls:
        return {"role": "assistant", "content": message.get("content") or "", **reasoning}
    return {"role": "assistant", "content": parsed.text, **reasoning, "tool_calls": [
        {"id": c.id, "type": "function",
         "function": {"name": c.name, "arguments": c.raw_arguments if c.error is None else "{}"}}
        for c in parsed.calls]}
