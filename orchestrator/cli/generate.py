"""`nightowl generate`, `nightowl functions` and `nightowl recall` (soft-verified data generation)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli.config import CONFIG_HELP, command_settings, default
from orchestrator.cli.shift import check_sandbox, parse_deadline
from orchestrator.console import console, out
from orchestrator.errors import EXIT_STOPPED, UsageError


def parse_commits(text: str | None) -> list[str]:
    commits = [c.strip() for c in (text or "HEAD").split(",") if c.strip()]
    if not commits:
        raise UsageError("--commits is empty: give commits separated by commas, e.g. --commits HEAD,v1.2")
    return commits


def parse_extra_body(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--extra-body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise UsageError("--extra-body must be a JSON object, e.g. '{\"top_k\": 20}'")
    return body


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    @app.command()
    @user_errors
    def functions(repo: Path = typer.Argument(..., help="A git repository."),
                  commit: str = typer.Option("HEAD", "--commit", help="Read files at this commit (never the working tree)."),
                  min_lines: Optional[int] = typer.Option(None, "--min-lines", min=1, help=default("generate.min_lines", "Skip functions shorter than this.")),
                  config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
                  as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """List the functions `nightowl generate` would sample, with counts per language."""
        from sandbox.git import repo_toplevel
        from training.synthesis.functions import list_functions

        top = repo_toplevel(repo.expanduser().resolve())
        s = command_settings(locals(), {"min_lines": ("generate.min_lines", "--min-lines")}, top)
        report = list_functions(top, commit, s.generate.min_lines)
        if as_json:
            out.print_json(report.model_dump_json())
            return
        for f in report.functions:
            out.print(f"{f.file}:{f.start_line}-{f.end_line}  {f.function}  [dim]{f.language}[/]", highlight=False)
        langs = "  ".join(f"{k} {v}" for k, v in report.per_language.items()) or "none"
        skipped = "  ".join(f"{k} {v}" for k, v in report.skipped.items()) or "nothing"
        out.print(f"{len(report.functions)} functions in {report.files_parsed} of {report.files_total} files at "
                  f"{report.commit[:12]} ({report.seconds:.2f} s): {langs}; files skipped: {skipped}", highlight=False)
        for lang, reasons in report.skipped_per_language.items():
            out.print(f"  {lang} files skipped: " + "  ".join(f"{k} {v}" for k, v in reasons.items()), highlight=False)
        if report.skip_rules:
            out.print("  why: " + "  ".join(f"{k} {v}" for k, v in report.skip_rules.items())
                      + "  (each file and rule: --json)", highlight=False)

    @app.command()
    @user_errors
    def recall(p1: Path = typer.Argument(..., help="The reference patch (T1)."),
               p2: Path = typer.Argument(..., help="The patch to score (T2)."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """Line-level recall of P1's changed lines in P2 (soft verification)."""
        from training.synthesis.recall import line_recall

        texts = []
        for path in (p1, p2):
            if not path.is_file():
                raise UsageError(f"{path} is not a file (give two patch files, e.g. runs/*/patch.diff)")
            texts.append(path.read_bytes().decode("utf-8", "surrogateescape"))
        result = line_recall(*texts)
        if as_json:
            out.print_json(result.model_dump_json())
        else:
            shown = "undefined (P1 changes no line)" if result.recall is None else f"{result.recall:.4f}"
            out.print(f"recall {shown}  matched {result.matched} of {result.total}")

    @app.command()
    @user_errors
    def generate(
        repo: Path = typer.Argument(..., help="The git repository to learn (only read, never changed)."),
        samples: int = typer.Option(..., "--samples", min=1, help="How many functions to sample (one sample each)."),
        base_url: list[str] = typer.Option(..., "--base-url", help="Teacher server (repeatable: a pool)."),
        model: str = typer.Option(..., "--model", help="Teacher model (T1, self-check, PR)."),
        out_dir: Path = typer.Option(..., "--out", help="Generation directory; re-running the same command resumes."),
        student_base_url: list[str] = typer.Option([], "--student-base-url", help="T2 server(s); default: the teacher's."),
        student_model: Optional[str] = typer.Option(None, "--student-model", help="T2 model; default: the teacher."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help=default("generate.workers", "Concurrent stages (agents or chat calls).")),
        commits: Optional[str] = typer.Option(None, "--commits", help="Snapshots to sample from, comma-separated (default HEAD)."),
        seed: Optional[int] = typer.Option(None, "--seed", help=default("generate.seed", "Sampling and category seed.")),
        demos: Optional[Path] = typer.Option(None, "--demos", help="File of issue texts separated by `---` lines "
                                             "(default: the repo's commit history)."),
        min_lines: Optional[int] = typer.Option(None, "--min-lines", min=1, help=default("generate.min_lines", "Skip functions shorter than this.")),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help=default("agent.max_steps", "Steps per rollout.")),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help=default("model.max_tokens", "Most tokens per model reply.")),
        temperature: Optional[float] = typer.Option(None, "--temperature", help=default("generate.temperature")),
        tool_choice: Optional[str] = typer.Option(None, "--tool-choice", help=default("model.tool_choice", "auto or required.")),
        extra_body: Optional[str] = typer.Option(None, "--extra-body", help=default("model.extra_body", "JSON object sent with every model request "
                                                 "(e.g. '{\"chat_template_kwargs\": {\"enable_thinking\": false}}').")),
        task_timeout: Optional[float] = typer.Option(None, "--task-timeout", help=default("agent.max_wall_s", "Seconds per rollout.")),
        model_timeout: Optional[float] = typer.Option(None, "--model-timeout", help=default("model.timeout_s", "Seconds per model request.")),
        model_retries: Optional[int] = typer.Option(None, "--model-retries", min=0, help=default("model.max_retries", "Retries of a failed model request.")),
        stall: Optional[float] = typer.Option(None, "--stall", help=default("generate.stall_s", "Watchdog: stop a rollout without a new step for this long.")),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (resumable)."),
        hours: Optional[float] = typer.Option(None, "--hours", help="Stop after H hours (resumable)."),
        token_budget: Optional[int] = typer.Option(None, "--token-budget", min=1, help="Stop once this many tokens are used."),
        sandbox: Optional[str] = typer.Option(None, "--sandbox", help=default("sandbox.kind", "auto or bwrap (bubblewrap isolation).")),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where workers keep their reusable workspaces "
                                               "(default OUT/workspaces; /dev/shm is fastest)."),
        config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
        as_json: bool = typer.Option(False, "--json", help="No dashboard; print one JSON object at the end."),
    ) -> None:
        """Soft-verified training data from REPO: T1 change, self-check, synthetic PR, T2 re-implementation, recall."""
        from typer.main import get_current_context

        from orchestrator.pipelines.generate_run import NoSamples, run_generate
        from orchestrator.shift.dashboard import LiveBoard

        options = generate_options(get_current_context().params)
        try:
            result = run_generate(options, note=lambda text: console.print(f"[dim]{text}[/]", highlight=False),
                                  board=lambda intro: LiveBoard(console, as_json, intro))
        except NoSamples as e:
            if e.result is not None:
                print_result(e.result, as_json)
            raise
        print_result(result, as_json)
        if not result.complete:
            raise typer.Exit(EXIT_STOPPED)

    def print_result(result: Any, as_json: bool) -> None:
        if as_json:
            out.print_json(json.dumps(result.printed()))
        else:
            st = result.stages or {}
            out.print(f"{'[green]complete[/]' if result.complete else '[yellow]stopped: ' + str(result.stopped) + '[/]'}"
                      f"  done {st.get('done', 0)}  dropped {st.get('dropped', 0)}  "
                      f"samples: {result.samples_file}")


def generate_options(flags: dict[str, Any]) -> Any:
    """The GenerateOptions a `nightowl generate` command line stands for (its parsed flags; nothing runs)."""
    from orchestrator.pipelines.generate_run import GenerateOptions
    from sandbox.git import repo_toplevel

    if flags["sandbox"] is not None:
        check_sandbox(flags["sandbox"])
    if flags["tool_choice"] not in (None, "auto", "required"):
        raise UsageError(f"--tool-choice must be auto or required, not {flags['tool_choice']!r}")
    if bool(flags["student_base_url"]) != bool(flags["student_model"]):
        raise UsageError("give --student-base-url and --student-model together (or neither: T2 uses the teacher)")
    if flags["demos"] is not None and not flags["demos"].is_file():
        raise UsageError(f"--demos {flags['demos']} is not a file")
    s = command_settings({**flags, "extra_body": parse_extra_body(flags["extra_body"]) or None}, GENERATE_KEYS,
                         repo_toplevel(flags["repo"].expanduser().resolve()))
    check_sandbox(s.sandbox.kind)
    deadline = parse_deadline(flags["until"], flags["hours"])
    return GenerateOptions(
        repo=flags["repo"], samples=flags["samples"], base_urls=flags["base_url"], model=flags["model"],
        out=flags["out_dir"], student_base_urls=flags["student_base_url"], student_model=flags["student_model"],
        workers=s.generate.workers, commits=parse_commits(flags["commits"]), seed=s.generate.seed,
        demos=flags["demos"], min_lines=s.generate.min_lines, max_steps=s.agent.max_steps,
        max_tokens=s.model.max_tokens, temperature=s.generate.temperature, tool_choice=s.model.tool_choice,
        extra_body=s.model.extra_body, task_timeout_s=s.agent.max_wall_s, model_timeout_s=s.model.timeout_s,
        model_retries=s.model.max_retries, stall_s=s.generate.stall_s, deadline=deadline,
        token_budget=flags["token_budget"], sandbox=s.sandbox.kind, workdir=flags["workdir"])


GENERATE_KEYS = {
    "workers": ("generate.workers", "--workers"), "seed": ("generate.seed", "--seed"),
    "min_lines": ("generate.min_lines", "--min-lines"), "max_steps": ("agent.max_steps", "--max-steps"),
    "max_tokens": ("model.max_tokens", "--max-tokens"), "temperature": ("generate.temperature", "--temperature"),
    "tool_choice": ("model.tool_choice", "--tool-choice"), "extra_body": ("model.extra_body", "--extra-body"),
    "task_timeout": ("agent.max_wall_s", "--task-timeout"), "model_timeout": ("model.timeout_s", "--model-timeout"),
    "model_retries": ("model.max_retries", "--model-retries"), "stall": ("generate.stall_s", "--stall"),
    "sandbox": ("sandbox.kind", "--sandbox")}
"""`nightowl generate`'s parameters that are settings: parameter -> (key in nightowl.toml, flag)."""
