"""The `nightowl` command line."""
from __future__ import annotations

import functools
import importlib.metadata
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from agent.loop import AgentConfig
from agent.model import ModelConfig
from agent.run import RunRequest, outcome_json, run_task
from agent.trajectory import ExitStatus, Trajectory, load_trajectory
from orchestrator.cli.config import (
    CONFIG_HELP,
    CWD_CONFIG_HELP,
    SANDBOX_HELP,
    default,
    given,
    sandbox_flag,
    sandbox_kind,
)
from orchestrator.cli.config import register as register_config_commands
from orchestrator.cli.doctor import register as register_doctor_command
from orchestrator.cli.eval import register as register_eval_commands
from orchestrator.cli.flywheel import register as register_flywheel_command
from orchestrator.cli.generate import register as register_generate_commands
from orchestrator.cli.report import register as register_report_command
from orchestrator.cli.serve import (
    PASSTHROUGH,
    SERVING_FLAGS,
    Adapters,
    DataParallel,
    Device,
    ExpertParallel,
    GpuMemory,
    Lora,
    MaxLoraRank,
    MaxLoras,
    MaxModelLen,
    ReasoningParser,
    TensorParallel,
    ToolCallParser,
    announce,
    log_path_for,
    refuse_with_base_url,
    server_config,
)
from orchestrator.cli.shift import register as register_shift_commands
from orchestrator.cli.train import register as register_train_commands
from orchestrator.console import configure_logging, console, out, plain
from orchestrator.crash import report_bug
from orchestrator.errors import EXIT_BUG, NightowlError, UsageError
from orchestrator.extras import missing_from_extra
from orchestrator.serving.model_import import register as register_model_commands
from orchestrator.settings import load_settings
from sandbox.git import repo_toplevel, resolve_commit, uncommitted_changes
from sandbox.select import ensure_isolation

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="nightowl: autonomous coding agents on your own repository, with open-weight models.")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """nightowl's own errors: one line on stderr, exit code 2. A bug: a short message, the traceback in a log."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NightowlError as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 2)) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as e:
            console.print(f"[bold red]internal error[/] (a bug in nightowl, not your input): {report_bug(e, fn.__name__)}",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BUG) from None
    return wrapper


def show_version(value: bool) -> None:
    if value:
        try:
            version = importlib.metadata.version("nightowl")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown (not installed; run `pip install -e .`)"
        out.print(f"nightowl {version}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(ctx: typer.Context,
                 version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                              help="Print the version and exit."),
                 verbose: bool = typer.Option(False, "--verbose",
                                              help="Debug messages on stderr and in the log too.")) -> None:
    """nightowl: autonomous coding agents on your own repository, with open-weight models."""
    configure_logging(ctx.invoked_subcommand or "nightowl", verbose)


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


def step_printer(quiet: bool) -> Callable[[Trajectory], None]:
    """Prints each step once, as it completes (the loop also reports after its last, step-less check)."""
    printed = 0

    def show(traj: Trajectory) -> None:
        nonlocal printed
        if quiet:
            return
        for step in traj.steps[printed:]:
            calls = ", ".join(e.tool + (f" ({e.error[:60]})" if e.error else "") for e in step.executions)
            if not calls:
                choices = step.raw_response.get("choices") or [{}]
                cut = choices[0].get("finish_reason") == "length"
                calls = f"no tool call: the reply was cut off at --max-tokens ({step.usage.completion_tokens} tokens)" \
                    if cut else "no tool call"
            console.print(f"[dim]step {step.index + 1:>3}[/]  {calls}  [dim]{step.model_duration_s:.1f}s model, "
                          f"{step.tools_duration_s:.1f}s tools, {traj.usage.total_tokens} tokens[/]", highlight=False,
                          soft_wrap=True)
        printed = len(traj.steps)
    return show


def check_repository(repo: Path, commit: str) -> tuple[Path, str]:
    """Everything about the repository that can be wrong, checked before any server starts."""
    top = repo_toplevel(repo.expanduser().resolve())
    base = resolve_commit(top, commit)
    changed = uncommitted_changes(top)
    if changed:
        console.print(f"[yellow]note:[/] {changed} uncommitted or untracked path(s) in {top} are not part of the run: "
                      f"it starts from {commit} ({base[:12]}); commit them to include them", highlight=False, soft_wrap=True)
    return top, base


@app.command(context_settings=PASSTHROUGH)
@user_errors
def run(
    ctx: typer.Context,
    repo: Path = typer.Argument(..., help="The git repository to work on (never modified except for a result branch)."),
    task: Optional[str] = typer.Option(None, "--task", help="What to do, as text."),
    task_file: Optional[Path] = typer.Option(None, "--task-file", help="What to do, read from a file."),
    model: Optional[str] = typer.Option(None, "--model", help=default("model.name", "Served model name; without --base-url, a hub id or local directory to serve.")),
    base_url: Optional[str] = typer.Option(None, "--base-url", help=default("model.base_url", "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; none: start vLLM for --model.")),
    out_dir: Optional[Path] = typer.Option(None, "--out", help=default("run.out", "Where OUT/<run-id>/trajectory.json and patch.diff go.")),
    commit: Optional[str] = typer.Option(None, "--commit", help=default("run.commit", "Commit to start from.")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help=default("agent.max_steps")),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help=default("model.max_tokens", "Most tokens per model reply.")),
    temperature: Optional[float] = typer.Option(None, "--temperature", help=default("model.temperature")),
    tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help=default("model.tool_choice", "auto or required.")),
    command_timeout: Optional[float] = typer.Option(None, "--command-timeout", help=default("agent.command_timeout_s", "Seconds before a command is killed.")),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help=default("model.api_key_env", "Environment variable with the API key.")),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help=SANDBOX_HELP),
    dangerously_no_sandbox: bool = typer.Option(False, "--dangerously-no-sandbox", help="Run agent commands without isolation."),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the result."),
    max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
    tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
    enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
    reasoning_parser: ReasoningParser = None, device: Device = None,
) -> None:
    """Run one agent on REPO until it submits a patch or a limit is reached.

    Without --base-url, vLLM is started for --model (its log goes to the run directory); the serving flags
    and any arguments after -- are for that server."""
    from agent.run import new_run_id
    from orchestrator.serving.vllm_server import VLLMServer

    flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}
    text = read_task(task, task_file)
    top = repo_toplevel(repo.expanduser().resolve())
    loaded = load_settings(config, top, given({
        "model.name": (model, "--model"), "model.base_url": ([base_url] if base_url else None, "--base-url"),
        "run.out": (out_dir, "--out"), "run.commit": (commit, "--commit"), "agent.max_steps": (max_steps, "--max-steps"),
        "model.max_tokens": (max_tokens, "--max-tokens"), "model.temperature": (temperature, "--temperature"),
        "model.tool_choice": (tool_choice, "--tool-choice"), "agent.command_timeout_s": (command_timeout, "--command-timeout"),
        "model.api_key_env": (api_key_env, "--api-key-env"), "sandbox.kind": (sandbox_flag(sandbox), "--sandbox"),
        "serve.device": (device, "--device")}))
    s = loaded.settings
    if not s.model.name:
        raise UsageError("no model: give --model NAME (or `name` under [model] in nightowl.toml)")
    refuse_with_base_url(s.model.base_url[0] if s.model.base_url else None, ctx.args, **flags)
    kind = sandbox_kind(s, dangerously_no_sandbox, console)
    ensure_isolation(kind, s.sandbox.policy())  # type: ignore[arg-type]
    check_repository(top, s.run.commit)
    sampling = s.model.model_dump(exclude={"name", "base_url"})
    run_id = new_run_id()

    def go(url: str, served: str, reasoning_in_history: bool | None = None) -> None:
        request = RunRequest(repo=top, task=text, commit=s.run.commit, out_dir=s.run.out, run_id=run_id,
                             agent=AgentConfig(**s.agent.model_dump()), sandbox=kind,  # type: ignore[arg-type]
                             limits=s.sandbox.resource_limits(), policy=s.sandbox.policy(),
                             model=ModelConfig(base_url=url, model=served, **{
                                 **sampling, "reasoning_in_history": s.model.reasoning_in_history
                                 if s.model.reasoning_in_history is not None else reasoning_in_history}))
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

    if s.model.base_url:
        go(s.model.base_url[0], s.model.name)
        return
    server = VLLMServer(server_config(s.model.name, ctx.args, log_path=log_path_for(s.run.out, run_id),
                                      **{**flags, "device": s.serve.device}))
    announce(console, server)
    with server:
        go(server.base_url, server.served_model_name, server.plan.reasoning_in_history)


@app.command()
@user_errors
def show(run_dir: Path = typer.Argument(..., help="A run directory (or its trajectory.json)."),
         full: bool = typer.Option(False, "--full", help="Do not shorten long messages.")) -> None:
    """Print a trajectory readably."""
    from orchestrator.cli.view import show_trajectory

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
               corpus: Optional[Path] = typer.Option(None, "--corpus", help="Text/source tree to train the tokenizer "
                                                     "(and --pretrain-steps) on; default: Python's standard library."),
               pretrain_steps: int = typer.Option(0, "--pretrain-steps", min=0, help="Next-token training steps on "
                                                  "the corpus (0: random weights; ~400 give a model LoRA can teach).")) -> None:
    """Build a tiny Qwen2 model + tokenizer that vLLM serves: random weights, or briefly pretrained on code."""
    missing = missing_from_extra("train")
    if missing:
        raise UsageError(f"nightowl tiny-model needs {', '.join(missing)}: install the train extra, "
                         "pip install -e '.[train]' (on a CPU-only machine install torch==2.13.0+cpu first, see README)")
    from training.finetune.tiny_model import build_tiny_model

    path = build_tiny_model(directory, corpus=corpus, pretrain_steps=pretrain_steps,
                            log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    out.print(f"tiny model written to {path}")


@app.command(context_settings=PASSTHROUGH)
@user_errors
def serve(ctx: typer.Context,
          model: str = typer.Option(..., "--model", help="Hub id, local model directory, or LoRA adapter directory."),
          port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help=default("serve.port")),
          host: Optional[str] = typer.Option(None, "--host", help=default("serve.host")),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="NIGHTOWL_API_KEY", show_default=False,
                                                help="Key clients must send; required when --host is not loopback."),
          served_model_name: Optional[str] = typer.Option(None, "--served-model-name"),
          adapter: Adapters = [],  # noqa: B006 (typer's default, never mutated)
          lora: Lora = False, max_lora_rank: MaxLoraRank = None, max_loras: MaxLoras = None,
          max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
          tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
          enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
          reasoning_parser: ReasoningParser = None, device: Device = None,
          dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and environment; start nothing."),
          log: Optional[Path] = typer.Option(None, "--log", help="vLLM's output (default: a new temp file)."),
          config_file: Optional[Path] = typer.Option(None, "--config", help=CWD_CONFIG_HELP),
          ) -> None:
    """Run the real vLLM OpenAI server until interrupted (arguments after -- go to vLLM untouched)."""
    from orchestrator.serving.vllm_server import VLLMServer, describe_plan, serve_forever

    flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}
    s = load_settings(config_file, None, given({"serve.port": (port, "--port"), "serve.host": (host, "--host"),
                                            "serve.device": (device, "--device")})).settings.serve
    flags["device"] = s.device
    config = server_config(model, ctx.args, port=s.port, host=s.host, api_key=api_key,
                           served_model_name=served_model_name, log_path=log, **flags)
    server = VLLMServer(config)
    announce(console, server, notes=True)
    if dry_run:
        plain(describe_plan(server.plan))
        return
    with server:
        out.print(f"serving {server.served_model_name} at {server.base_url} (Ctrl-C stops); log: {server.log_path}",
                  highlight=False)
        serve_forever(server)


register_shift_commands(app, user_errors)
register_report_command(app, user_errors)
register_train_commands(app, user_errors)
register_config_commands(app, user_errors)
register_doctor_command(app, user_errors)
register_generate_commands(app, user_errors)
register_eval_commands(app, user_errors)
register_flywheel_command(app, user_errors)
register_model_commands(app, user_errors)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
