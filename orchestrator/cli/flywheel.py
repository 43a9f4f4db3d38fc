"""`nightowl flywheel` (generate -> export -> train -> load -> eval -> promote, round after round)."""
from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli.config import CONFIG_HELP, command_settings, default
from orchestrator.console import console, plain
from orchestrator.errors import EXIT_STOPPED, UsageError
from training.evaluation.metrics import METRICS

METRIC_NAMES = ", ".join(METRICS)


def train_plan(base: str, train_args: list[str], devices: list[int] | None) -> dict[str, Any]:
    """`nightowl train --plan` for this base and these train options, on the training GPUs ({} if it cannot
    plan: training then says why itself). In a child process: planning looks at the GPUs."""
    import tempfile

    from orchestrator.cli.main import app
    from orchestrator.pipelines.stage_process import run_stage
    from orchestrator.pipelines.train_plan import PlanRequest, TrainPlan, plan_training
    from orchestrator.serving.student import train_environment

    try:
        options = command_options(app)(["train", "--plan", "--base", base, *train_args])
        with tempfile.TemporaryDirectory(prefix="nightowl-plan-") as scratch:
            processes = len(devices) if devices and len(devices) > 1 else None  # one torchrun process per GPU
            return run_stage(plan_training, PlanRequest(train=options, processes=processes), TrainPlan,
                             Path(scratch) / "plan.log", env=train_environment(devices)).plan
    except Exception as e:  # the flywheel still starts; `train` says why itself
        return {"error": str(e)[-300:]}


def memory_line(plan: dict[str, Any]) -> str:
    if "peak_gib_per_device" not in plan:
        return f"none ({plan.get('error') or 'no plan'})"
    budget = f" of {plan['budget_gib']:g} GiB" if plan.get("budget_gib") is not None else ""
    verdict = {True: "fits", False: "does NOT fit", None: "budget unknown"}[plan.get("fits")]
    return (f"about {plan['peak_gib_per_device']:g} GiB per device{budget} on "
            f"{', '.join(d['device'] for d in plan.get('devices') or []) or plan.get('device')}: {verdict}")


def command_options(app: typer.Typer) -> Callable[[list[Any]], Any]:
    """Reads a step's `nightowl` command line (as `--dry-run` prints it) into the options model its stage function
    takes: the command's own flags, defaults and checks, and nothing run."""
    from orchestrator.cli.eval import eval_options
    from orchestrator.cli.generate import generate_options
    from orchestrator.cli.train import export_options, train_options

    builders = {"generate": generate_options, "export": export_options, "train": train_options,
                "eval": eval_options}

    def options_of(args: list[Any]) -> Any:
        name, *rest = map(str, args)
        command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        try:
            flags = command.make_context(f"nightowl {name}", rest).params
        except Exception as e:  # click's usage errors (an unknown or malformed --train-args option)
            raise UsageError(f"nightowl {name}: {getattr(e, 'format_message', e.__str__)()}") from None
        return builders[name](flags)
    return options_of


def next_round(out: Path, rounds: int) -> int:
    for n in range(1, rounds + 1):
        if not (out / f"round-{n}" / "decide.json").is_file():
            return n
    return rounds


FLYWHEEL_KEYS = {
    "samples": ("flywheel.samples", "--samples"), "metric": ("flywheel.metric", "--metric"),
    "workers": ("flywheel.workers", "--workers"), "max_steps": ("agent.max_steps", "--max-steps"),
    "max_tokens": ("model.max_tokens", "--max-tokens"), "sandbox": ("sandbox.kind", "--sandbox"),
    "tool_choice": ("model.tool_choice", "--tool-choice"), "train_args": ("flywheel.train_args", "--train-args"),
    "generate_args": ("flywheel.generate_args", "--generate-args"),
    "max_lora_rank": ("flywheel.max_lora_rank", "--max-lora-rank"), "release": ("flywheel.release", "--release")}
"""`nightowl flywheel`'s parameters that are settings: parameter -> (key in nightowl.toml, flag)."""


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:

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
        samples: Optional[int] = typer.Option(None, "--samples", min=1, help=default("flywheel.samples", "Generate samples per round.")),
        commits: Optional[str] = typer.Option(None, "--commits", help="Snapshots to generate from (default: the newest "
                                              "commit before the benchmark's cut-off, else HEAD)."),
        student_as_teacher: bool = typer.Option(False, "--student-as-teacher", help="Once a round is promoted, it is the teacher too."),
        metric: Optional[str] = typer.Option(None, "--metric", help=default("flywheel.metric", f"Promotion metric: {METRIC_NAMES}.")),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help=default("flywheel.workers")),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help=default("agent.max_steps")),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help=default("model.max_tokens", "Most tokens per model reply (generate and eval).")),
        sandbox: Optional[str] = typer.Option(None, "--sandbox", help=default("sandbox.kind", "auto or bwrap.")),
        tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help=default("model.tool_choice", "auto or required.")),
        train_args: Optional[str] = typer.Option(None, "--train-args", help=default("flywheel.train_args", "Extra `nightowl train` options, e.g. '--epochs 3'.")),
        generate_args: Optional[str] = typer.Option(None, "--generate-args", help=default("flywheel.generate_args", "Extra `nightowl generate` options.")),
        max_lora_rank: Optional[int] = typer.Option(None, "--max-lora-rank", min=1, help=default("flywheel.max_lora_rank", "For the server the flywheel starts.")),
        max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="For the server the flywheel starts."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (re-run to resume)."),
        release: Optional[str] = typer.Option(None, "--release", help=default("flywheel.release", "Around train: sleep (vLLM sleep mode), restart (stop and "
                                              "start the server the flywheel started), none, or auto (sleep when training and "
                                              "serving share a GPU, else none).")),
        train_devices: Optional[str] = typer.Option(None, "--train-devices", help="GPUs train uses, e.g. 4,5,6,7 "
                                                    "(several: torchrun, one process each; default: all)."),
        serve_devices: Optional[str] = typer.Option(None, "--serve-devices", help="GPUs of the student server: the "
                                                    "one the flywheel starts runs on them; with --student-base-url, "
                                                    "the ones your server uses (default: all)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps of the next round in order and exit "
                                     "(nothing started, nothing written)."),
        config_file: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Rounds of: generate data, export, train an adapter, load it, eval it against the best, promote if better."""
        from orchestrator.cli.serve import announce, server_config
        from orchestrator.cli.shift import check_sandbox
        from orchestrator.pipelines.flywheel import Flywheel, FlywheelOptions, read_best
        from orchestrator.serving.student import (
            SLEEP_ARGS,
            SLEEP_ENV,
            StudentServer,
            choose_release,
            parse_devices,
            visible_gpus,
        )
        from orchestrator.serving.vllm_server import VLLMServer
        from orchestrator.shift.engine import parse_until
        from orchestrator.shift.tasks import load_tasks_file
        from sandbox.git import repo_toplevel
        from training.evaluation.holdout import holdout_since, last_commit_before
        from training.evaluation.metrics import METRICS

        if sandbox is not None:
            check_sandbox(sandbox)
        s = command_settings({**locals(), "config": config_file,
                              "train_args": shlex.split(train_args) if train_args is not None else None,
                              "generate_args": shlex.split(generate_args) if generate_args is not None else None},
                             FLYWHEEL_KEYS, repo_toplevel(repo.expanduser().resolve()))
        samples, metric, workers, release = s.flywheel.samples, s.flywheel.metric, s.flywheel.workers, s.flywheel.release
        max_steps, max_tokens, tool_choice, sandbox = s.agent.max_steps, s.model.max_tokens, s.model.tool_choice, s.sandbox.kind
        train_args, generate_args = shlex.join(s.flywheel.train_args), shlex.join(s.flywheel.generate_args)
        max_lora_rank = s.flywheel.max_lora_rank
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
        train_gpus = parse_devices(train_devices, "--train-devices")
        serve_gpus = parse_devices(serve_devices, "--serve-devices")
        mode, why = choose_release(release, student_base_url is None, train_gpus, serve_gpus,
                                   student_base_url or "http://127.0.0.1", visible_gpus())
        student: StudentServer
        if student_base_url is None:
            env = {**(SLEEP_ENV if mode == "sleep" else {}),
                   **({"CUDA_VISIBLE_DEVICES": ",".join(map(str, serve_gpus))} if serve_gpus is not None else {})}
            config = server_config(base, SLEEP_ARGS if mode == "sleep" else [], lora=True, max_lora_rank=max_lora_rank,
                                   max_loras=2, max_model_len=max_model_len, log_path=out_dir / "vllm.log", env=env,
                                   device=s.serve.device)
            server = VLLMServer(config)
            fixed = config.model_copy(update={"port": server.port})
            student_base_url, base_name = server.base_url, server.served_model_name

            def start() -> VLLMServer:
                """The server on the same port every time, so that every command's --base-url stays valid."""
                started = VLLMServer(fixed)
                console.print(f"[dim]starting the student server on port {started.port} (log {fixed.log_path})[/]",
                              highlight=False)
                started.start()
                return started

            student = StudentServer(student_base_url, mode, start=start,
                                    describe=f"{base} on port {server.port}")
            if not dry_run:
                announce(console, server)
        else:
            student = StudentServer(student_base_url, mode)
        options = FlywheelOptions(
            repo=top, out=out_dir.resolve(), rounds=rounds, base=base, base_name=base_name,
            student_url=student_base_url, teacher_url=teacher_base_url, teacher_model=teacher_model,
            tasks=tasks.resolve(), samples=samples, commits=commits, student_as_teacher=student_as_teacher,
            metric=metric, workers=workers, max_steps=max_steps, max_tokens=max_tokens, sandbox=sandbox,
            tool_choice=tool_choice, train_args=shlex.split(train_args), generate_args=shlex.split(generate_args),
            until=until, deadline=deadline, train_devices=train_gpus,
            config=config_file.resolve() if config_file else None)
        wheel = Flywheel(options, options_of=command_options(app),
                         log=lambda line: console.print(f"[dim]{line}[/]", highlight=False),
                         show=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True),
                         server=student)
        memory = train_plan(base, options.train_args, train_gpus)
        if dry_run:
            n = next_round(options.out, rounds)
            plain(f"round {n} of {options.out} (release: {mode}: {why}):")
            if student.own:
                plain(f"  the student server: vLLM for {base} on {student_base_url}, started by the flywheel "
                      + ("when a step first needs it" if mode == "restart" else "before the first step"))
            for line in wheel.dry_run(n):
                plain(f"  {line}")
            plain(f"  train memory plan: {memory_line(memory)}")
            return
        console.print(f"[dim]around train: {mode} ({why}); train memory plan: {memory_line(memory)}[/]",
                      highlight=False, soft_wrap=True)
        if memory.get("vllm_serves_lora") is False:
            raise UsageError(f"the installed vLLM serves no LoRA adapters for {memory.get('architecture')}: the "
                             "flywheel's adapters could not be loaded")
        if memory.get("fits") is False:
            raise UsageError(f"train would not fit: {memory_line(memory)}; change --train-args "
                             f"({', or '.join(memory.get('suggestions') or ['a smaller base'])}) or --train-devices")
        ctx.call_on_close(student.stop)
        done = wheel.run()
        best = read_best(options.out, base_name)
        plain(json.dumps({"complete": done, "best": best.model_dump(), "rounds": str(options.out / "rounds.jsonl")}))
        if best.adapter:
            console.print(f"best: {best.model} (round {best.round}), linked as {options.out / 'best'}: run agents with it "
                          f"by `nightowl run REPO --model {options.out / 'best'}`, or serve it with `nightowl serve --model "
                          f"{base} --adapter {best.model}={best.adapter}` and use --model {best.model}", highlight=False)
        if not done:
            raise typer.Exit(EXIT_STOPPED)
