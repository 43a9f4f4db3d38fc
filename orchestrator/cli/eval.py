"""`nightowl bench-history` (a private benchmark from the repo's past commits) and `nightowl eval`."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.cli.config import CONFIG_HELP, command_settings, default
from orchestrator.console import console, out
from orchestrator.errors import EXIT_STOPPED, UsageError
from training.evaluation.metrics import METRICS

METRIC_NAMES = ", ".join(METRICS)


def named_values(pairs: list[str], option: str, models: list[str]) -> dict[str, float]:
    """`NAME=NUMBER` entries, each naming one of the --model values."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, number = pair.rpartition("=")
        try:
            values[name] = float(number)
        except ValueError:
            name = ""
        if not sep or name not in models or values[name] < 0:
            raise UsageError(f"{option} {pair!r}: give MODEL=USD with MODEL one of the --model values "
                             f"({', '.join(models)}) and a non-negative number")
    return values


def per_model(values: list[str], option: str, models: list[str], default: str | None) -> list[str]:
    """One value for all models, or one per model in --model order."""
    if not values and default is not None:
        return [default] * len(models)
    if len(values) == 1:
        return values * len(models)
    if len(values) != len(models):
        raise UsageError(f"give {option} once (for every model) or once per --model ({len(models)}), "
                         f"not {len(values)} times")
    return values


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    @app.command("bench-history")
    @user_errors
    def bench_history(
        repo: Path = typer.Argument(..., help="The git repository whose past commits become tasks."),
        since: str = typer.Option(..., "--since", help="Cut-off date: commits from here on are held out (YYYY-MM-DD)."),
        until: Optional[str] = typer.Option(None, "--until", help="Only commits before this date."),
        max_tasks: Optional[int] = typer.Option(None, "--max", min=1, help="At most N tasks (oldest first)."),
        max_lines: int = typer.Option(400, "--max-changed-lines", min=1, help="Skip commits changing more lines."),
        tasks_out: Path = typer.Option(..., "--out", help="Tasks file to write (JSONL; `shift` and `eval` take it)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Mine REPO's commits since --since into benchmark tasks; training data must predate the cut-off."""
        from sandbox.git import repo_toplevel
        from training.evaluation.history import mine_history, parse_date
        from training.evaluation.holdout import record_holdout

        top = repo_toplevel(repo.expanduser().resolve())
        start = parse_date(since, "--since")
        end = parse_date(until, "--until") if until else None
        if end is not None and end <= start:
            raise UsageError("--until must be after --since")
        if tasks_out.exists() and not tasks_out.is_file():
            raise UsageError(f"--out {tasks_out} is not a file")
        report = mine_history(top, start, end, max_tasks, max_lines)
        if not report.tasks:
            raise UsageError(f"no usable commits in {top} since {since}"
                             + (f" (skipped: {report.skipped})" if report.skipped else "") + "; try an earlier --since")
        from agent.trajectory import write_text_atomic
        write_text_atomic(tasks_out, "".join(t.model_dump_json(exclude_none=True) + "\n" for t in report.tasks))
        cutoff = record_holdout(top, start, tasks_out)
        result = {"tasks": len(report.tasks), "with_tests": sum(t.tests is not None for t in report.tasks),
                  "skipped": report.skipped, "out": str(tasks_out), "holdout_since": cutoff.isoformat()}
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(f"{result['tasks']} tasks ({result['with_tests']} with a test check) -> {tasks_out}; skipped: "
                      + (", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) or "none")
                      + f"\ntraining data must predate {cutoff.isoformat()} (export refuses later snapshots)",
                      highlight=False)

    @app.command("eval")
    @user_errors
    def eval_command(
        tasks: Path = typer.Option(..., "--tasks", help="Tasks file, e.g. from `nightowl bench-history`."),
        model: list[str] = typer.Option(..., "--model", help="Model or adapter name (repeatable; the first is A, the baseline)."),
        base_url: list[str] = typer.Option(..., "--base-url", help="Server URL, once for all models or once per --model."),
        api_key_env: list[str] = typer.Option([], "--api-key-env", help=default("model.api_key_env", "Env variable with the API key, once or per --model.")),
        price: list[str] = typer.Option([], "--price", help="MODEL=USD per million tokens (repeatable)."),
        gpu_hour: list[str] = typer.Option([], "--gpu-hour-price", help="MODEL=USD per GPU-hour, for self-hosted models."),
        out_dir: Path = typer.Option(..., "--out", help="Eval directory; re-running with the same one resumes."),
        repo: Optional[Path] = typer.Option(None, "--repo", help="The repository (default: the one the tasks were mined from)."),
        metric: Optional[str] = typer.Option(None, "--metric", help=default("eval.metric", f"Compared metric: {METRIC_NAMES}.")),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help=default("eval.workers")),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help=default("agent.max_steps")),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help=default("model.max_tokens", "Most tokens per model reply.")),
        tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help=default("model.tool_choice", "auto or required.")),
        sandbox: Optional[str] = typer.Option(None, "--sandbox", help=default("sandbox.kind", "auto or bwrap (bubblewrap isolation).")),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where workers keep their reusable workspaces "
                                               "(default OUT/models/<model>/workspaces; /dev/shm is fastest)."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (re-run to resume)."),
        seed: Optional[int] = typer.Option(None, "--seed", help=default("eval.seed", "Bootstrap seed.")),
        config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the eval object (also saved as OUT/eval.json)."),
    ) -> None:
        """The same tasks for each model; per-model metrics and a paired bootstrap verdict of B against A."""
        from typer.main import get_current_context

        from orchestrator.pipelines.evaluate import run_eval

        result = run_eval(eval_options(get_current_context().params))
        if as_json:
            out.print_json(json.dumps(result.printed()))
        else:
            print_table(out, result.model_dump(mode="json"))
        if not result.complete:
            console.print(f"[yellow]stopped before every task finished: re-run to resume ({out_dir})[/]")
            raise typer.Exit(EXIT_STOPPED)


def eval_options(flags: dict[str, Any]) -> Any:
    """The EvalOptions a `nightowl eval` command line stands for (its parsed flags; nothing runs)."""
    from orchestrator.cli.shift import check_sandbox
    from orchestrator.pipelines.evaluate import EvalModel, EvalOptions
    from orchestrator.shift.engine import parse_until
    from orchestrator.shift.tasks import load_tasks_file
    from sandbox.git import repo_toplevel

    if flags["sandbox"] is not None:
        check_sandbox(flags["sandbox"])
    if flags["tool_choice"] not in (None, "auto", "required"):
        raise UsageError(f"--tool-choice must be auto or required, not {flags['tool_choice']!r}")
    tasks, model, repo = flags["tasks"], flags["model"], flags["repo"]
    specs = load_tasks_file(tasks)
    urls = per_model(flags["base_url"], "--base-url", model, None)
    prices = named_values(flags["price"], "--price", model)
    gpu = named_values(flags["gpu_hour"], "--gpu-hour-price", model)
    if repo is None:
        mined = {s.repo for s in specs if s.repo}
        if len(mined) != 1:
            raise UsageError("give --repo (the tasks file does not name one repository)")
        repo = Path(mined.pop())
    top = repo_toplevel(repo.expanduser().resolve())
    s = command_settings(flags, EVAL_KEYS, top)
    check_sandbox(s.sandbox.kind)
    keys = per_model(flags["api_key_env"], "--api-key-env", model, s.model.api_key_env)
    models = [EvalModel(name=m, base_url=u, api_key_env=k, price_per_mtok=prices.get(m), gpu_hour_price=gpu.get(m))
              for m, u, k in zip(model, urls, keys)]
    until = flags["until"]
    return EvalOptions(repo=top, tasks=specs, tasks_file=tasks.resolve(), models=models,
                       out=flags["out_dir"].resolve(), metric=s.eval.metric, workers=s.eval.workers,
                       max_steps=s.agent.max_steps, max_tokens=s.model.max_tokens, tool_choice=s.model.tool_choice,
                       temperature=s.model.temperature, task_timeout_s=s.agent.max_wall_s,
                       command_timeout_s=s.agent.command_timeout_s, sandbox=s.sandbox.kind, seed=s.eval.seed,
                       workdir=flags["workdir"], deadline=parse_until(until) if until else None)


EVAL_KEYS = {
    "metric": ("eval.metric", "--metric"), "workers": ("eval.workers", "--workers"),
    "max_steps": ("agent.max_steps", "--max-steps"), "max_tokens": ("model.max_tokens", "--max-tokens"),
    "tool_choice": ("model.tool_choice", "--tool-choice"), "sandbox": ("sandbox.kind", "--sandbox"),
    "seed": ("eval.seed", "--seed")}
"""`nightowl eval`'s parameters that are settings: parameter -> (key in nightowl.toml, flag)."""


def print_table(out: Console, result: dict[str, Any]) -> None:
    from training.evaluation.metrics import metrics_table

    for line in metrics_table(result["models"]):
        out.print(line, highlight=False, soft_wrap=True)
    c = result["comparison"]
    if c:
        ci = f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else "-"
        diff = f"{c['diff']:+.3f}" if c["diff"] is not None else "-"
        out.print(f"{c['b']} vs {c['a']} on {c['metric']} ({c['tasks']} paired tasks): {diff}, 95% CI {ci}: "
                  f"{c['verdict']}", highlight=False, soft_wrap=True)
