"""`nightowl shift` and `nightowl status` (the overnight orchestrator)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from orchestrator.cli.config import CONFIG_HELP, SANDBOX_HELP, default, given, sandbox_flag, sandbox_kind
from orchestrator.cli.serve import (
    PASSTHROUGH,
    SERVING_FLAGS,
    DataParallel,
    Device,
    ExpertParallel,
    GpuMemory,
    MaxModelLen,
    ReasoningParser,
    TensorParallel,
    ToolCallParser,
    announce,
    refuse_with_base_url,
    server_config,
)
from orchestrator.console import console, out
from orchestrator.errors import EXIT_STOPPED, UsageError
from orchestrator.extras import missing_from_extra
from orchestrator.settings import EXECUTORS, load_settings
from sandbox.backends import kinds_text
from sandbox.git import repo_toplevel
from sandbox.select import ISOLATING_SANDBOXES, ensure_isolation


def check_sandbox(sandbox: str) -> None:
    if sandbox not in ISOLATING_SANDBOXES:
        raise UsageError(f"--sandbox must be {kinds_text(ISOLATING_SANDBOXES)}, not {sandbox!r} (nightowl never "
                         "runs agents unisolated in the background)")


def parse_deadline(until: str | None, hours: float | None) -> float | None:
    """--until HH:MM or --hours H as a Unix time (None: no deadline)."""
    from orchestrator.shift.engine import parse_until

    if until and hours:
        raise UsageError("give --until or --hours, not both")
    if hours is not None and hours <= 0:
        raise UsageError("--hours must be positive")
    return parse_until(until) if until else (time.time() + hours * 3600 if hours else None)


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:

    @app.command(context_settings=PASSTHROUGH)
    @user_errors
    def shift(
        ctx: typer.Context,
        repo: Path = typer.Argument(..., help="The git repository to work on (only result branches are added)."),
        tasks: Optional[Path] = typer.Option(None, "--tasks", help=default("shift.tasks", "Tasks file: YAML list or JSONL (task, id, max_steps, commit).")),
        base_url: list[str] = typer.Option([], "--base-url", help=default("model.base_url", "OpenAI-compatible server (repeatable: a pool); none: start vLLM for --model (log: OUT/vllm.log).")),
        model: Optional[str] = typer.Option(None, "--model", help=default("model.name", "Served model name; without --base-url, a hub id or directory to serve.")),
        out_dir: Optional[Path] = typer.Option(None, "--out", help=default("shift.out", "Shift directory; re-running with the same one resumes.")),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help=default("shift.workers", "Concurrent agents.")),
        until: Optional[str] = typer.Option(None, "--until", help=default("shift.until", "Stop at HH:MM (in-flight attempts resume later).")),
        hours: Optional[float] = typer.Option(None, "--hours", help=default("shift.hours", "Stop after H hours.")),
        token_budget: Optional[int] = typer.Option(None, "--token-budget", min=1, help=default("shift.token_budget", "Stop once this many tokens are used.")),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help=default("agent.max_steps", "Steps per attempt (a task's max_steps wins).")),
        task_timeout: Optional[float] = typer.Option(None, "--task-timeout", help=default("agent.max_wall_s", "Seconds per attempt.")),
        max_attempts: Optional[int] = typer.Option(None, "--max-attempts", min=1, help=default("shift.max_attempts", "Attempts per task (server faults do not count).")),
        stall: Optional[float] = typer.Option(None, "--stall", help=default("shift.stall_s", "Watchdog: stop an agent without a new step for this long.")),
        per_server: Optional[int] = typer.Option(None, "--per-server", min=1, help=default("shift.per_server", "Concurrent agents per server (none: all workers).")),
        model_timeout: Optional[float] = typer.Option(None, "--model-timeout", help=default("model.timeout_s", "Seconds per model request.")),
        model_retries: Optional[int] = typer.Option(None, "--model-retries", min=0, help=default("model.max_retries", "Retries of a failed model request.")),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help=default("model.max_tokens", "Most tokens per model reply.")),
        temperature: Optional[float] = typer.Option(None, "--temperature", help=default("model.temperature")),
        tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help=default("model.tool_choice", "auto or required.")),
        command_timeout: Optional[float] = typer.Option(None, "--command-timeout", help=default("agent.command_timeout_s")),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help=default("shift.workdir", "Where workers keep their reusable workspaces (default OUT/workspaces; /dev/shm is fastest).")),
        sandbox: Optional[str] = typer.Option(None, "--sandbox", help=SANDBOX_HELP),
        dangerously_no_sandbox: bool = typer.Option(False, "--dangerously-no-sandbox", help="Run agent commands without isolation."),
        executor: Optional[str] = typer.Option(None, "--executor", help=default("shift.executor", f"{' or '.join(EXECUTORS)} (threads or a Ray cluster).")),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help=default("shift.ray_address", "Ray cluster (none: start a local one).")),
        ray_cpus_per_agent: Optional[float] = typer.Option(None, "--ray-cpus-per-agent", min=0.01, help=default("shift.ray_cpus_per_agent", "CPUs each attempt asks the Ray cluster for.")),
        ray_memory_per_agent: Optional[int] = typer.Option(None, "--ray-memory-per-agent", min=1, help=default("shift.ray_memory_mb_per_agent", "MiB each attempt asks the Ray cluster for (none: the sandbox's memory limit).")),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help=default("model.api_key_env", "Environment variable with the servers' API key.")),
        config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
        as_json: bool = typer.Option(False, "--json", help="No dashboard; print one JSON object at the end."),
        max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
        tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
        enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
        reasoning_parser: ReasoningParser = None, device: Device = None,
    ) -> None:
        """Run every task in TASKS with N parallel agents, durably; re-run the same command to resume.

        Without --base-url, one vLLM server is started for --model for the length of the shift; the serving
        flags and any arguments after -- are for it."""
        from orchestrator.serving.vllm_server import VLLMServer
        from orchestrator.shift.dashboard import LiveBoard
        from orchestrator.shift.engine import Shift, ShiftOptions, file_source
        from orchestrator.shift.executors import RayPlacement

        flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}

        top = repo_toplevel(repo.expanduser().resolve())
        loaded = load_settings(config, top, given({
            "shift.tasks": (tasks, "--tasks"), "model.base_url": (base_url, "--base-url"), "model.name": (model, "--model"),
            "shift.out": (out_dir, "--out"), "shift.workers": (workers, "--workers"), "shift.until": (until, "--until"),
            "shift.hours": (hours, "--hours"), "shift.token_budget": (token_budget, "--token-budget"),
            "agent.max_steps": (max_steps, "--max-steps"), "agent.max_wall_s": (task_timeout, "--task-timeout"),
            "shift.max_attempts": (max_attempts, "--max-attempts"), "shift.stall_s": (stall, "--stall"),
            "shift.per_server": (per_server, "--per-server"), "model.timeout_s": (model_timeout, "--model-timeout"),
            "model.max_retries": (model_retries, "--model-retries"), "model.max_tokens": (max_tokens, "--max-tokens"),
            "model.temperature": (temperature, "--temperature"), "model.tool_choice": (tool_choice, "--tool-choice"),
            "agent.command_timeout_s": (command_timeout, "--command-timeout"),
            "sandbox.kind": (sandbox_flag(sandbox), "--sandbox"), "shift.executor": (executor, "--executor"),
            "shift.ray_address": (ray_address, "--ray-address"), "model.api_key_env": (api_key_env, "--api-key-env"),
            "shift.workdir": (workdir, "--workdir"), "serve.device": (device, "--device"),
            "shift.ray_cpus_per_agent": (ray_cpus_per_agent, "--ray-cpus-per-agent"),
            "shift.ray_memory_mb_per_agent": (ray_memory_per_agent, "--ray-memory-per-agent")}))
        s, sh = loaded.settings, loaded.settings.shift
        missing = [flag for flag, value in (("--tasks", sh.tasks), ("--model", s.model.name), ("--out", sh.out))
                   if not value]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (flags, or [model] name and [shift] tasks / out "
                             "in nightowl.toml)")
        refuse_with_base_url(s.model.base_url, ctx.args, **flags)
        if sh.executor == "ray" and (missing := missing_from_extra("ray")):
            raise UsageError(f"--executor ray needs {', '.join(missing)}: pip install -e '.[ray]'")
        deadline = parse_deadline(sh.until, sh.hours)
        source = file_source(sh.tasks)  # type: ignore[arg-type]
        kind = sandbox_kind(s, dangerously_no_sandbox, console)
        ensure_isolation(kind, s.sandbox.policy())  # type: ignore[arg-type]
        model_name, base_urls = s.model.name, s.model.base_url
        if not base_urls:
            server = VLLMServer(server_config(model_name, ctx.args, log_path=sh.out / "vllm.log",  # type: ignore[operator, arg-type]
                                              **{**flags, "device": s.serve.device}))
            announce(console, server)
            ctx.call_on_close(server.stop)  # runs however the command ends (return, Exit, error, Ctrl-C)
            server.start()
            model_name, base_urls = server.served_model_name, [server.base_url]
        options = ShiftOptions(repo=top, out=sh.out, model=model_name, base_urls=base_urls,  # type: ignore[arg-type]
                               workers=sh.workers, per_server_cap=sh.per_server, deadline=deadline,
                               token_budget=sh.token_budget, max_attempts=sh.max_attempts,
                               max_infra_retries=sh.max_infra_retries, stall_s=sh.stall_s, sandbox=kind,
                               executor=sh.executor, ray_address=sh.ray_address, workdir=sh.workdir,
                               ray_placement=RayPlacement(cpus_per_agent=sh.ray_cpus_per_agent,
                                                          memory_mb_per_agent=sh.ray_memory_mb_per_agent),
                               agent=AgentConfig(**s.agent.model_dump()),
                               sampling=SamplingOptions(**s.model.model_dump(exclude={"name", "base_url"})),
                               limits=s.sandbox.resource_limits(), policy=s.sandbox.policy())
        workers = sh.workers
        runner = Shift(options, sources=[source])
        board = LiveBoard(console, as_json, lambda s: f"shift on {s.repo}: {s.store.counts()['tasks']} tasks, "
                                                      f"{workers} workers; events in {s.out / 'events.jsonl'}")
        report = runner.run(install_signals=True, on_start=board.start, on_end=board.end)
        if as_json:
            out.print_json(json.dumps({"complete": report.complete, "stopped": report.stopped, **report.counts,
                                       "summary": str(report.summary_path), "events": str(report.events_path)}))
        else:
            st = report.counts["states"]
            out.print(f"{'[green]complete[/]' if report.complete else '[yellow]stopped: ' + str(report.stopped) + '[/]'}"
                      f"  done {st['done']}  failed {st['failed']}  queued {st['queued']}  summary: {report.summary_path}")
        if not report.complete:
            raise typer.Exit(EXIT_STOPPED)

    @app.command()
    @user_errors
    def status(out_dir: Path = typer.Argument(..., help="A shift's --out directory."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """Counts per state and per result of a shift (running or not)."""
        from orchestrator.cli.status import shift_status

        data = shift_status(out_dir)
        if as_json:
            out.print_json(json.dumps(data))
            return
        st = data["states"]
        out.print(f"{data['tasks']} tasks: queued {st['queued']}  running {st['running']}  done {st['done']}  "
                  f"failed {st['failed']}   attempts {data['attempts']}  tokens {data['tokens']}")
        for status_name, n in sorted(data["exit_status"].items()):
            out.print(f"  {status_name}: {n}")
        if "generate" in data:
            gen = data["generate"]
            out.print("samples: " + "  ".join(f"{k} {v}" for k, v in gen["stages"].items())
                      + f"   recall mean {gen['recall_mean']}  histogram {gen['recall_histogram']}", highlight=False)
        for r in data["running"]:
            out.print(f"  running {r['run_id']}  step {r['steps']}  {r['server']}"
                      + ("  (stale: no heartbeat)" if r["stale"] else ""))


