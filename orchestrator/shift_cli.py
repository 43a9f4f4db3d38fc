"""`nightowl shift` and `nightowl status` (the overnight orchestrator)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.errors import UsageError
from orchestrator.serve_options import (PASSTHROUGH, SERVING_FLAGS, DataParallel, Device, ExpertParallel, GpuMemory,
                                        MaxModelLen, ReasoningParser, TensorParallel, ToolCallParser, announce,
                                        refuse_with_base_url, server_config)

EXIT_STOPPED = 3
"""The shift stopped before every task finished (deadline, budget, signal): re-run to resume."""


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    console = Console(stderr=True)
    out = Console()

    @app.command(context_settings=PASSTHROUGH)
    @user_errors
    def shift(
        ctx: typer.Context,
        repo: Path = typer.Argument(..., help="The git repository to work on (only result branches are added)."),
        tasks: Path = typer.Option(..., "--tasks", help="Tasks file: YAML list or JSONL (task, id, max_steps, commit)."),
        base_url: list[str] = typer.Option([], "--base-url", help="OpenAI-compatible server (repeatable: a pool). Omitted: start vLLM for --model (log: OUT/vllm.log)."),
        model: str = typer.Option(..., "--model", help="Served model name; without --base-url, a hub id or directory to serve."),
        out_dir: Path = typer.Option(..., "--out", help="Shift directory; re-running with the same one resumes."),
        workers: int = typer.Option(4, "--workers", min=1, help="Concurrent agents."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (in-flight attempts resume later)."),
        hours: Optional[float] = typer.Option(None, "--hours", help="Stop after H hours."),
        token_budget: Optional[int] = typer.Option(None, "--token-budget", min=1, help="Stop once this many tokens are used."),
        max_steps: int = typer.Option(100, "--max-steps", min=1, help="Steps per attempt (a task's max_steps wins)."),
        task_timeout: float = typer.Option(3600.0, "--task-timeout", help="Seconds per attempt."),
        max_attempts: int = typer.Option(2, "--max-attempts", min=1, help="Attempts per task (server faults do not count)."),
        stall: float = typer.Option(900.0, "--stall", help="Watchdog: stop an agent without a new step for this long."),
        per_server: Optional[int] = typer.Option(None, "--per-server", min=1, help="Concurrent agents per server."),
        model_timeout: float = typer.Option(600.0, "--model-timeout", help="Seconds per model request."),
        max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Most tokens per model reply."),
        command_timeout: float = typer.Option(300.0, "--command-timeout"),
        sandbox: str = typer.Option("auto", "--sandbox", help="auto/bwrap (isolating) or local (no isolation)."),
        executor: str = typer.Option("local", "--executor", help="local (threads) or ray."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster (default: start a local one)."),
        api_key_env: str = typer.Option("NIGHTOWL_API_KEY", "--api-key-env", help="Environment variable with the servers' API key."),
        as_json: bool = typer.Option(False, "--json", help="No dashboard; print one JSON object at the end."),
        max_model_len: MaxModelLen = None, gpu_memory_utilization: GpuMemory = None,
        tensor_parallel_size: TensorParallel = None, data_parallel_size: DataParallel = None,
        enable_expert_parallel: ExpertParallel = False, tool_call_parser: ToolCallParser = None,
        reasoning_parser: ReasoningParser = None, device: Device = "auto",
    ) -> None:
        """Run every task in TASKS with N parallel agents, durably; re-run the same command to resume.

        Without --base-url, one vLLM server is started for --model for the length of the shift; the serving
        flags and any arguments after -- are for it."""
        from orchestrator.serving import VLLMServer
        from orchestrator.shift import Shift, ShiftOptions, file_source, parse_until

        flags = {k: v for k, v in locals().items() if k in SERVING_FLAGS}
        refuse_with_base_url(base_url, ctx.args, **flags)

        if until and hours:
            raise UsageError("give --until or --hours, not both")
        if sandbox not in ("auto", "bwrap", "local"):
            raise UsageError(f"--sandbox must be auto, bwrap or local, not {sandbox!r}")
        if executor not in ("local", "ray"):
            raise UsageError(f"--executor must be local or ray, not {executor!r}")
        if hours is not None and hours <= 0:
            raise UsageError("--hours must be positive")
        deadline = parse_until(until) if until else (time.time() + hours * 3600 if hours else None)
        source = file_source(tasks)
        if not base_url:
            server = VLLMServer(server_config(model, ctx.args, log_path=out_dir / "vllm.log", **flags))
            announce(console, server)
            ctx.call_on_close(server.stop)  # runs however the command ends (return, Exit, error, Ctrl-C)
            server.start()
            model, base_url = server.served_model_name, [server.base_url]
        options = ShiftOptions(repo=repo, out=out_dir, model=model, base_urls=base_url, workers=workers,
                               per_server_cap=per_server, deadline=deadline, token_budget=token_budget,
                               max_steps=max_steps, task_timeout_s=task_timeout, max_attempts=max_attempts,
                               stall_s=stall, sandbox=sandbox, executor=executor, ray_address=ray_address,
                               model_timeout_s=model_timeout, max_tokens=max_tokens, command_timeout_s=command_timeout,
                               api_key_env=api_key_env)
        runner = Shift(options, sources=[source])
        live = None

        def start(s: Shift) -> None:
            nonlocal live
            if as_json or not console.is_terminal:
                console.print(f"[dim]shift on {s.repo}: {s.store.counts()['tasks']} tasks, {workers} workers; "
                              f"events in {s.out / 'events.jsonl'}[/]", highlight=False)
                return
            from rich.live import Live
            from orchestrator.dashboard import Dashboard
            board = Dashboard()
            live = Live(get_renderable=lambda: board.render(s.snapshot()), console=console, refresh_per_second=2,
                        transient=False)
            live.start()

        def end(s: Shift) -> None:
            if live is not None:
                live.stop()

        report = runner.run(install_signals=True, on_start=start, on_end=end)
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
        from orchestrator.status import shift_status

        data = shift_status(out_dir)
        if as_json:
            out.print_json(json.dumps(data))
            return
        st = data["states"]
        out.print(f"{data['tasks']} tasks: queued {st['queued']}  running {st['running']}  done {st['done']}  "
                  f"failed {st['failed']}   attempts {data['attempts']}  tokens {data['tokens']}")
        for status_name, n in sorted(data["exit_status"].items()):
            out.print(f"  {status_name}: {n}")
        for r in data["running"]:
            out.print(f"  running {r['run_id']}  step {r['steps']}  {r['server']}"
                      + ("  (stale: no heartbeat)" if r["stale"] else ""))


