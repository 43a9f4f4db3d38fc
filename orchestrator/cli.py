"""The `nightowl` command line."""
from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from agent.loop import AgentConfig
from agent.model import ModelConfig
from agent.run import DEFAULT_OUT, RunRequest, outcome_json, run_task
from agent.trajectory import ExitStatus, Trajectory, load_trajectory
from orchestrator.crash import report_bug
from orchestrator.errors import NightowlError, UsageError
from orchestrator.serve_options import (PASSTHROUGH, SERVING_FLAGS, Adapters, DataParallel, Device, ExpertParallel,
                                        GpuMemory, Lora, MaxLoraRank, MaxLoras, MaxModelLen, ReasoningParser,
                                        TensorParallel, ToolCallParser, announce, log_path_for,
                                        refuse_with_base_url, server_config)
from orchestrator.report_cli import register as register_report_command
from orchestrator.shift_cli import register as register_shift_commands
from orchestrator.train_cli import register as register_train_commands

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="nightowl: autonomous coding agents on your own repository, with open-weight models.")
console = Console(stderr=True)
out = Console()

EXIT_BUG = 70
"""sysexits' EX_SOFTWARE: an internal error, as opposed to 2 for bad input."""
UNSANDBOXED_BANNER = """[bold white on red]
  !!! RUNNING WITHOUT A SANDBOX (--dangerously-no-sandbox) !!!
  Agent commands run as your user, can read your files and secrets, reach the network and change anything
  you can change. Only do this on a disposable machine.
[/]"""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """nightowl's own errors: one line on stderr, exit code 2. A bug: a short message, the traceback in a log."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NightowlError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as e:
            console.print(f"[bold red]internal error[/] (a bug in nightowl, not your input): {report_bug(e, fn.__name__)}",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BUG) from None
    return wrapper


def read_task(task: str | None, task_file: Path | None) -> str:
    if task and task_file:
        raise UsageError("give either --task or --task-file, not both")
    if task_file:
        if not task_file.is_file():
            raise UsageError(f"task file {task_file} does not exist")
        task = task_file.read_text(encoding="utf-8")
    if not task or not task.strip():
        raise UsageError("the task is empty: give a task with --task TEXT or --task-file FILE")
    return task


def sandbox_choice(requested: str, dangerously_no_sandbox: bool) -> str:
    if requested not in ("auto", "bwrap"):
        raise UsageError(f"--sandbox must be auto or bwrap, not {requested!r} "
                         "(running without isolation is --dangerously-no-sandbox)")
    if dangerously_no_sandbox:
        console.print(UNSANDBOXED_BANNER)
        return "local"
    return requested


def step_printer(quiet: bool) -> Callable[[Trajectory], None]:
    def show(traj: Trajectory) -> None:
        if quiet or not traj.steps:
            return
        step = traj.steps[-1]
        calls = ", ".join(e.tool + (f" ({e.error[:60]})" if e.error else "") for e in step.executions) or "no tool call"
        console.print(f"[dim]step {step.index + 1:>3}[/]  {calls}  [dim]{step.model_duration_s:.1f}s model, "
                      f"{step.tools_duration_s:.1f}s tools, {traj.usage.total_tokens} tokens[/]", highlight=False)
    return show


@app.command(context_settings=PASSTHROUGH)
@user_errors
def run(
    ctx: typer.Context,
    repo: Path = typer.Argument(..., help="The git repository to work on (never modified except for a result branch)."),
    task: Optional[str] = typer.Option(None, "--task", help="What to do, as text."),
    task_file: Optional[Path] = typer.Option(None, "--task-file", help="What to do, read from a file."),
    model: str = typer.Option(..., "--model", help="Served model name; without --base-url, a hub id or local directory to serve."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1. Omitted: start vLLM for --model."),
    out_dir: Path = typer.Option(DEFAULT_OUT, "--out", help="Where OUT/<run-id>/trajectory.json and patch.diff go."),
    commit: str = typer.Option("HEAD", "--commit", help="Commit to start from."),
    max_steps: int = typer.Option(100, "--max-steps", min=1),
    max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Most tokens per model reply."),
    temperature: float = typer.Option(0.0, "--temperature"),
    tool_choice: str = typer.Option("auto", "--tool-choice", help="auto or required."),
    command_timeout: float = typer.Option(300.0, "--command-timeout", help="Seconds before a command is killed."),
    api_key_env: str = typer.Option("NIGHTOWL_API_KEY", "--api-key-env", help="Environment variable with the API key."),
    sandbox: str = typer.Option("auto", "--sandbox", help="auto or bwrap (bubblewrap)."),
    dangerously_no_sandbox: bool = typer.Option(False, "--dangerously-no-sandbox", help="Run agent commands without isolation."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the result."),
    max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
    tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
    enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
    reasoning_parser: ReasoningParser = None, device: Device = "auto",
) -> None:
    """Run one agent on REPO until it submits a patch or a limit is reached.

    Without --base-url, vLLM is started for --model (its log goes to the run directory); the serving flags
    and any arguments after -- are for that server."""
    from agent.run import new_run_id
    from orchestrator.serving import VLLMServer

    flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}
    refuse_with_base_url(base_url, ctx.args, **flags)
    text = read_task(task, task_file)
    if tool_choice not in ("auto", "required"):
        raise UsageError(f"--tool-choice must be auto or required, not {tool_choice!r}")
    agent_config = AgentConfig(max_steps=max_steps, command_timeout_s=command_timeout)
    sandbox = sandbox_choice(sandbox, dangerously_no_sandbox)

    run_id = new_run_id()

    def go(url: str, served: str, reasoning_in_history: bool | None = None) -> None:
        request = RunRequest(repo=repo, task=text, commit=commit, out_dir=out_dir, agent=agent_config,
                             sandbox=sandbox, run_id=run_id,  # type: ignore[arg-type]
                             model=ModelConfig(base_url=url, model=served, max_tokens=max_tokens,
                                               temperature=temperature, tool_choice=tool_choice,  # type: ignore[arg-type]
                                               api_key_env=api_key_env, reasoning_in_history=reasoning_in_history))
        outcome = run_task(request, progress=step_printer(as_json))
        if as_json:
            out.print_json(json.dumps(outcome_json(outcome)))
        else:
            style = "green" if outcome.exit_status == ExitStatus.submitted else "yellow"
            out.print(f"[{style}]{outcome.exit_status.value}[/] after {outcome.steps} steps  run {outcome.run_id}")
            out.print(f"trajectory: {outcome.trajectory_path}\npatch:      {outcome.patch_path}")
            if outcome.branch:
                out.print(f"branch:     {outcome.branch}")
            elif outcome.branch_error:
                out.print(f"branch:     not created ({outcome.branch_error})", highlight=False)
        if outcome.exit_status != ExitStatus.submitted or outcome.branch_error:
            raise typer.Exit(1)

    if base_url:
        go(base_url, model)
        return
    server = VLLMServer(server_config(model, ctx.args, log_path=log_path_for(out_dir, run_id), **flags))
    announce(console, server)
    with server:
        go(server.base_url, server.served_model_name, server.plan.reasoning_in_history)


@app.command()
@user_errors
def show(run_dir: Path = typer.Argument(..., help="A run directory (or its trajectory.json)."),
         full: bool = typer.Option(False, "--full", help="Do not shorten long messages.")) -> None:
    """Print a trajectory readably."""
    from orchestrator.view import show_trajectory

    path = run_dir / "trajectory.json" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise UsageError(f"no trajectory at {path} (give a run directory from `nightowl run`)")
    try:
        traj = load_trajectory(path)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    show_trajectory(traj, out, full=full)


@app.command("tiny-model")
@user_errors
def tiny_model(directory: Path = typer.Argument(..., help="Where to write the model (created)."),
               corpus: Optional[Path] = typer.Option(None, "--corpus", help="Text/source tree to train the tokenizer on.")) -> None:
    """Build a tiny random-weight Qwen2 model + tokenizer that vLLM serves (shows the machinery only)."""
    from training.tiny_model import build_tiny_model

    path = build_tiny_model(directory, corpus=corpus)
    out.print(f"tiny model written to {path}")


@app.command(context_settings=PASSTHROUGH)
@user_errors
def serve(ctx: typer.Context,
          model: str = typer.Option(..., "--model", help="Hub id, local model directory, or LoRA adapter directory."),
          port: int = typer.Option(8000, "--port"),
          host: str = typer.Option("127.0.0.1", "--host"),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="NIGHTOWL_API_KEY", show_default=False,
                                                help="Key clients must send; required when --host is not loopback."),
          served_model_name: Optional[str] = typer.Option(None, "--served-model-name"),
          adapter: Adapters = [], lora: Lora = False, max_lora_rank: MaxLoraRank = None, max_loras: MaxLoras = None,
          max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
          tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
          enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
          reasoning_parser: ReasoningParser = None, device: Device = "auto",
          dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and environment; start nothing."),
          log: Optional[Path] = typer.Option(None, "--log", help="vLLM's output (default: a new temp file)."),
          ) -> None:
    """Run the real vLLM OpenAI server until interrupted (arguments after -- go to vLLM untouched)."""
    from orchestrator.serving import VLLMServer, describe_plan, serve_forever

    flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}
    config = server_config(model, ctx.args, port=port, host=host, api_key=api_key,
                           served_model_name=served_model_name, log_path=log, **flags)
    server = VLLMServer(config)
    announce(console, server, notes=True)
    if dry_run:
        print(describe_plan(server.plan))
        return
    with server:
        out.print(f"serving {server.served_model_name} at {server.base_url} (Ctrl-C stops); log: {server.log_path}",
                  highlight=False)
        serve_forever(server)


register_shift_commands(app, user_errors)
register_report_command(app, user_errors)
register_train_commands(app, user_errors)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
