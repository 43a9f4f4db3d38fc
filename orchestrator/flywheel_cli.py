"""`nightowl flywheel` (generate -> export -> train -> load -> eval -> promote, round after round)."""
from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.errors import UsageError
from orchestrator.shift_cli import EXIT_STOPPED



def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    console = Console(stderr=True)

    @app.command()
    @user_errors
    def flywheel(
        ctx: typer.Context,
        repo: Path = typer.Argument(..., help="The repository to specialise on."),
        rounds: int = typer.Option(..., "--rounds", min=1, help="Rounds to run (re-run with more to go on)."),
        base: str = typer.Option(..., "--base", help="Base model directory or hub id (trained and served)."),
        teacher_base_url: str = typer.Option(..., "--teacher-base-url", help="The teacher's server."),
        teacher_model: str = typer.Option(..., "--teacher-model", help="The teacher's model name."),
        tasks: Path = typer.Option(..., "--tasks", help="Eval tasks, e.g. from `nightowl bench-history`."),
        out_dir: Path = typer.Option(..., "--out", help="Flywheel directory; re-running the same command resumes."),
        student_base_url: Optional[str] = typer.Option(None, "--student-base-url", help="A vLLM server for --base with LoRA on "
                                                       "(`nightowl serve --model BASE --lora`); default: start one."),
        student_model: Optional[str] = typer.Option(None, "--student-model", help="The base's served name on "
                                                    "--student-base-url (default: --base as given)."),
        samples: int = typer.Option(20, "--samples", min=1, help="Generate samples per round."),
        commits: Optional[str] = typer.Option(None, "--commits", help="Snapshots to generate from (default: the newest "
                                              "commit before the benchmark's cut-off, else HEAD)."),
        student_as_teacher: bool = typer.Option(False, "--student-as-teacher", help="Once a round is promoted, it is the teacher too."),
        metric: str = typer.Option("recall", "--metric", help="Promotion metric: recall, submit, resolve or validity."),
        workers: int = typer.Option(2, "--workers", min=1),
        max_steps: int = typer.Option(30, "--max-steps", min=1),
        max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Most tokens per model reply (generate and eval)."),
        sandbox: str = typer.Option("auto", "--sandbox"),
        tool_choice: str = typer.Option("auto", "--tool-choice", help="auto or required."),
        train_args: str = typer.Option("", "--train-args", help="Extra `nightowl train` options, e.g. '--epochs 3'."),
        generate_args: str = typer.Option("", "--generate-args", help="Extra `nightowl generate` options."),
        max_lora_rank: int = typer.Option(16, "--max-lora-rank", help="For the server the flywheel starts."),
        max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="For the server the flywheel starts."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (re-run to resume)."),
    ) -> None:
        """Rounds of: generate data, export, train an adapter, load it, eval it against the best, promote if better."""
        from orchestrator.flywheel import Flywheel, FlywheelOptions, read_best
        from orchestrator.serve_options import announce, server_config
        from orchestrator.serving import VLLMServer
        from orchestrator.shift import parse_until
        from orchestrator.shift_cli import check_sandbox
        from orchestrator.tasks import load_tasks_file
        from sandbox.git import repo_toplevel
        from training.holdout import holdout_since, last_commit_before
        from training.metrics import METRICS

        check_sandbox(sandbox)
        if metric not in METRICS:
            raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
        load_tasks_file(tasks)
        top = repo_toplevel(repo.expanduser().resolve())
        deadline = parse_until(until) if until else None
        if commits is None and (cutoff := holdout_since(top)) is not None:
            commits = last_commit_before(top, cutoff)
            if commits is None:
                raise UsageError(f"no commit in {top} predates the benchmark cut-off {cutoff.isoformat()}: "
                                 "give --commits or a later --since to bench-history")
            console.print(f"[dim]generating from {commits[:12]}, the newest commit before the cut-off "
                          f"{cutoff.isoformat()}[/]", highlight=False)
        base_name = student_model or base
        if student_base_url is None:
            server = VLLMServer(server_config(base, [], lora=True, max_lora_rank=max_lora_rank, max_loras=2,
                                              max_model_len=max_model_len, log_path=out_dir / "vllm.log"))
            announce(console, server)
            ctx.call_on_close(server.stop)
            server.start()
            student_base_url, base_name = server.base_url, server.served_model_name
        options = FlywheelOptions(
            repo=top, out=out_dir.resolve(), rounds=rounds, base=base, base_name=base_name,
            student_url=student_base_url, teacher_url=teacher_base_url, teacher_model=teacher_model,
            tasks=tasks.resolve(), samples=samples, commits=commits, student_as_teacher=student_as_teacher,
            metric=metric, workers=workers, max_steps=max_steps, max_tokens=max_tokens, sandbox=sandbox,
            tool_choice=tool_choice, train_args=shlex.split(train_args), generate_args=shlex.split(generate_args),
            until=until, deadline=deadline)
        done = Flywheel(options, log=lambda line: console.print(f"[dim]{line}[/]", highlight=False),
                        show=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)).run()
        best = read_best(options.out, base_name)
        typer.echo(json.dumps({"complete": done, "best": best.model_dump(), "rounds": str(options.out / "rounds.jsonl")}))
        if best.adapter:
            console.print(f"best: {best.model} (round {best.round}), linked as {options.out / 'best'}: run agents with it "
                          f"by `nightowl run REPO --model {options.out / 'best'}`, or serve it with `nightowl serve --model "
                          f"{base} --adapter {best.model}={best.adapter}` and use --model {best.model}", highlight=False)
        if not done:
            raise typer.Exit(EXIT_STOPPED)
