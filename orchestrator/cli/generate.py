"""`nightowl generate`, `nightowl functions` and `nightowl recall` (soft-verified data generation)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.cli.shift import check_sandbox, parse_deadline
from orchestrator.errors import EXIT_STOPPED, NothingProduced, UsageError


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
    console = Console(stderr=True)
    out = Console()

    @app.command()
    @user_errors
    def functions(repo: Path = typer.Argument(..., help="A git repository."),
                  commit: str = typer.Option("HEAD", "--commit", help="Read files at this commit (never the working tree)."),
                  min_lines: int = typer.Option(3, "--min-lines", min=1, help="Skip functions shorter than this."),
                  as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """List the functions `nightowl generate` would sample, with counts per language."""
        from sandbox.git import repo_toplevel
        from training.synthesis.functions import list_functions

        report = list_functions(repo_toplevel(repo.expanduser().resolve()), commit, min_lines)
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
        workers: int = typer.Option(4, "--workers", min=1, help="Concurrent stages (agents or chat calls)."),
        commits: Optional[str] = typer.Option(None, "--commits", help="Snapshots to sample from, comma-separated (default HEAD)."),
        seed: int = typer.Option(0, "--seed", help="Sampling and category seed."),
        demos: Optional[Path] = typer.Option(None, "--demos", help="File of issue texts separated by `---` lines "
                                             "(default: the repo's commit history)."),
        min_lines: int = typer.Option(3, "--min-lines", min=1, help="Skip functions shorter than this."),
        max_steps: int = typer.Option(60, "--max-steps", min=1, help="Steps per rollout."),
        max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Most tokens per model reply."),
        temperature: float = typer.Option(0.6, "--temperature"),
        tool_choice: str = typer.Option("auto", "--tool-choice", help="auto or required."),
        extra_body: Optional[str] = typer.Option(None, "--extra-body", help="JSON object sent with every model request "
                                                 "(e.g. '{\"chat_template_kwargs\": {\"enable_thinking\": false}}')."),
        task_timeout: float = typer.Option(3600.0, "--task-timeout", help="Seconds per rollout."),
        model_timeout: float = typer.Option(600.0, "--model-timeout", help="Seconds per model request."),
        model_retries: int = typer.Option(3, "--model-retries", min=0, help="Retries of a failed model request."),
        stall: float = typer.Option(900.0, "--stall", help="Watchdog: stop a rollout without a new step for this long."),
        until: Optional[str] = typer.Option(None, "--until", help="Stop at HH:MM (resumable)."),
        hours: Optional[float] = typer.Option(None, "--hours", help="Stop after H hours (resumable)."),
        token_budget: Optional[int] = typer.Option(None, "--token-budget", min=1, help="Stop once this many tokens are used."),
        sandbox: str = typer.Option("auto", "--sandbox", help="auto or bwrap (bubblewrap isolation)."),
        workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where workers keep their reusable workspaces "
                                               "(default OUT/workspaces; /dev/shm is fastest)."),
        as_json: bool = typer.Option(False, "--json", help="No dashboard; print one JSON object at the end."),
    ) -> None:
        """Soft-verified training data from REPO: T1 change, self-check, synthetic PR, T2 re-implementation, recall."""
        from agent.trajectory import write_text_atomic
        from orchestrator.pipelines.generate import GenerateSettings, Generation, check_resume
        from orchestrator.pipelines.samples import stage_counts
        from orchestrator.shift.dashboard import LiveBoard
        from orchestrator.shift.engine import RoleEndpoints, Shift, ShiftOptions
        from orchestrator.shift.store import DB_NAME, Store
        from sandbox.git import repo_toplevel
        from training.evaluation.holdout import DEMONSTRATIONS, demonstrations_record, holdout_since
        from training.synthesis.demonstrations import demonstration_pool
        from training.synthesis.functions import plan_samples, skip_summary
        from training.synthesis.gitblobs import resolve

        check_sandbox(sandbox)
        if tool_choice not in ("auto", "required"):
            raise UsageError(f"--tool-choice must be auto or required, not {tool_choice!r}")
        if bool(student_base_url) != bool(student_model):
            raise UsageError("give --student-base-url and --student-model together (or neither: T2 uses the teacher)")
        if demos is not None and not demos.is_file():
            raise UsageError(f"--demos {demos} is not a file")
        body = parse_extra_body(extra_body)
        deadline = parse_deadline(until, hours)
        top = repo_toplevel(repo.expanduser().resolve())
        commits_arg = parse_commits(commits)
        resolved = None
        if (out_dir / DB_NAME).is_file():
            store = Store(out_dir)
            try:
                resolved = check_resume(store, seed, commits_arg)
            finally:
                store.close()
        resolved = resolved or [resolve(top, c) for c in commits_arg]
        started = time.monotonic()
        plan = plan_samples(top, resolved, samples, seed, min_lines)
        if not plan.functions:
            raise UsageError(f"no functions to sample in {top} at {', '.join(c[:12] for c in resolved)} "
                             "(see `nightowl functions REPO`)")
        cutoff = holdout_since(top)
        pool, pool_source = demonstration_pool(top, demos, before=cutoff)
        write_text_atomic(out_dir / DEMONSTRATIONS, demonstrations_record(pool_source, cutoff))
        console.print(f"[dim]sampled {len(plan.functions)} of {plan.available} functions from {len(resolved)} "
                      f"snapshot(s) in {time.monotonic() - started:.2f} s; demonstrations: {len(pool)} from "
                      f"{pool_source}[/]", highlight=False)
        skipped = skip_summary(plan.reports)["skip_rules"]
        if skipped:
            console.print("[dim]files not sampled: " + "  ".join(f"{k} {v}" for k, v in skipped.items())
                          + f" (`nightowl functions {top} --json` lists them)[/]", highlight=False)
        teacher = RoleEndpoints(base_urls=base_url, model=model)
        student = RoleEndpoints(base_urls=student_base_url, model=student_model) if student_model else teacher
        options = ShiftOptions(repo=top, out=out_dir, model=model, base_urls=base_url, workers=workers,
                               roles={"teacher": teacher, "student": student}, create_branches=False,
                               deadline=deadline, token_budget=token_budget, max_steps=max_steps,
                               task_timeout_s=task_timeout, max_attempts=1, stall_s=stall, sandbox=sandbox,
                               model_timeout_s=model_timeout, model_retries=model_retries, max_tokens=max_tokens,
                               temperature=temperature,
                               tool_choice=tool_choice, extra_body=body, request_errors_count=True,
                               stop_on_internal_error=True, workdir=workdir)
        generation = Generation(plan.functions, pool, GenerateSettings(seed=seed, max_steps=max_steps),
                                binding={"seed": seed, "commits_arg": commits_arg, "commits": resolved})
        runner = Shift(options, stages=generation)
        board = LiveBoard(console, as_json, lambda s: f"generating {len(plan.functions)} samples with {workers} "
                                                      f"workers; events in {s.out / 'events.jsonl'}")
        report = runner.run(install_signals=True, on_start=board.start, on_end=board.end)
        store = Store(out_dir, readonly=True)
        try:
            stages = stage_counts(store) or {}
        finally:
            store.close()
        if as_json:
            out.print_json(json.dumps({"complete": report.complete, "stopped": report.stopped, **stages,
                                       "sampling": skip_summary(plan.reports),
                                       "samples_file": str(out_dir / "samples.jsonl"), "events": str(report.events_path)}))
        else:
            st = stages.get("stages", {})
            out.print(f"{'[green]complete[/]' if report.complete else '[yellow]stopped: ' + str(report.stopped) + '[/]'}"
                      f"  done {st.get('done', 0)}  dropped {st.get('dropped', 0)}  "
                      f"samples: {out_dir / 'samples.jsonl'}")
        if not report.complete:
            raise typer.Exit(EXIT_STOPPED)
        if not stages.get("stages", {}).get("done"):
            raise NothingProduced(f"generate finished with 0 samples in {out_dir}: {why_dropped(stages)}")


def why_dropped(stages: dict[str, Any]) -> str:
    """`N dropped: reason (count, e.g. "first message"), ...`: why a generation produced nothing."""
    dropped = stages.get("dropped") or {}
    if not dropped:
        return "no sample was dropped either (nothing ran?)"
    examples = stages.get("dropped_examples") or {}
    parts = [f"{reason} ({count}, e.g. {examples.get(reason, '')[:200]!r})" for reason, count in
             sorted(dropped.items(), key=lambda kv: -kv[1])]
    return f"{sum(dropped.values())} dropped: " + "; ".join(parts)
