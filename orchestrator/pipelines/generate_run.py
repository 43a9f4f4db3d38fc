"""`run_generate`: one generation (plan the samples, run the shift, count) as a function of its options.

The CLI (`nightowl generate`) parses flags into `GenerateOptions`, calls `run_generate` and prints the result;
the flywheel runs it in a child process (orchestrator/pipelines/stage_process.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from copy import copy
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.trajectory import write_text_atomic
from orchestrator.errors import NothingProduced, UsageError
from orchestrator.pipelines.generate import SAMPLES_FILE, GenerateSettings, Generation, check_resume
from orchestrator.pipelines.samples import stage_counts
from orchestrator.shift.engine import RoleEndpoints, Shift, ShiftOptions
from orchestrator.shift.store import DB_NAME, Store


class GenerateOptions(BaseModel):
    repo: Path
    samples: int = Field(gt=0)
    base_urls: list[str]
    """The teacher's servers (a pool)."""
    model: str
    out: Path
    student_base_urls: list[str] = Field(default_factory=list)
    student_model: str | None = None
    """T2's model; None: the teacher."""
    workers: int = copy(ShiftOptions.model_fields["workers"])
    commits: list[str] = Field(default_factory=lambda: ["HEAD"])
    seed: int = 0
    demos: Path | None = None
    min_lines: int = Field(default=3, gt=0)
    max_steps: int = copy(AgentConfig.model_fields["max_steps"])
    max_tokens: int = copy(SamplingOptions.model_fields["max_tokens"])
    temperature: float = 0.6
    """Generate's own default, warmer than an agent run's (SamplingOptions): the teacher's changes should vary."""
    tool_choice: Literal["auto", "required"] = copy(SamplingOptions.model_fields["tool_choice"])
    extra_body: dict[str, Any] = Field(default_factory=dict)
    task_timeout_s: float = copy(AgentConfig.model_fields["max_wall_s"])
    model_timeout_s: float = copy(SamplingOptions.model_fields["timeout_s"])
    model_retries: int = copy(SamplingOptions.model_fields["max_retries"])
    stall_s: float = copy(ShiftOptions.model_fields["stall_s"])
    deadline: float | None = None
    token_budget: int | None = None
    sandbox: str = "auto"
    workdir: Path | None = None


class GenerateResult(BaseModel):
    """What `nightowl generate --json` prints: the shift's end, the sample counts (`stage_counts`, absent when
    the store holds no sample), how the functions were sampled and where the samples are."""
    complete: bool
    stopped: str | None
    samples: int | None = None
    stages: dict[str, int] | None = None
    recall_histogram: Any = None
    recall_undefined: int | None = None
    recall_mean: float | None = None
    dropped: dict[str, int] | None = None
    dropped_examples: dict[str, str] | None = None
    sampling: dict[str, Any]
    samples_file: Path
    events: Path

    def printed(self) -> dict[str, Any]:
        """The JSON object, keys as given (no null counts for a store without samples)."""
        return self.model_dump(mode="json", exclude_unset=True)


class NoSamples(NothingProduced):
    """A generation ran to its end with 0 samples; `result` is what it did."""
    result: GenerateResult | None = None


class Board(Protocol):
    def start(self, shift: Shift) -> None: ...
    def end(self, shift: Shift) -> None: ...


class PlainBoard:
    """No dashboard: the intro as one line."""
    def __init__(self, note: Callable[[str], None], intro: Callable[[Shift], str]):
        self.note, self.intro = note, intro

    def start(self, shift: Shift) -> None:
        self.note(self.intro(shift))

    def end(self, shift: Shift) -> None:
        pass


def run_generate(options: GenerateOptions, note: Callable[[str], None] = print,
                 board: Callable[[Callable[[Shift], str]], Board] | None = None) -> GenerateResult:
    """Runs (or resumes) the generation in options.out. `note` gets progress lines; `board(intro)` makes what
    shows the running shift (default: the intro line through `note`). Raises NoSamples when it finished with 0
    samples; a stopped run (deadline, budget, signal) is a result with complete=False."""
    from sandbox.git import repo_toplevel
    from training.evaluation.holdout import DEMONSTRATIONS, demonstrations_record, holdout_since
    from training.synthesis.demonstrations import demonstration_pool
    from training.synthesis.functions import plan_samples, skip_summary
    from training.synthesis.gitblobs import resolve

    top = repo_toplevel(options.repo.expanduser().resolve())
    out_dir = options.out
    resolved = None
    if (out_dir / DB_NAME).is_file():
        store = Store(out_dir)
        try:
            resolved = check_resume(store, options.seed, options.commits)
        finally:
            store.close()
    resolved = resolved or [resolve(top, c) for c in options.commits]
    started = time.monotonic()
    plan = plan_samples(top, resolved, options.samples, options.seed, options.min_lines)
    if not plan.functions:
        raise UsageError(f"no functions to sample in {top} at {', '.join(c[:12] for c in resolved)} "
                         "(see `nightowl functions REPO`)")
    cutoff = holdout_since(top)
    pool, pool_source = demonstration_pool(top, options.demos, before=cutoff)
    write_text_atomic(out_dir / DEMONSTRATIONS, demonstrations_record(pool_source, cutoff))
    note(f"sampled {len(plan.functions)} of {plan.available} functions from {len(resolved)} snapshot(s) in "
         f"{time.monotonic() - started:.2f} s; demonstrations: {len(pool)} from {pool_source}")
    skipped = skip_summary(plan.reports)["skip_rules"]
    if skipped:
        note("files not sampled: " + "  ".join(f"{k} {v}" for k, v in skipped.items())
             + f" (`nightowl functions {top} --json` lists them)")
    runner = Shift(shift_options(options, top), stages=Generation(
        plan.functions, pool, GenerateSettings(seed=options.seed, max_steps=options.max_steps),
        binding={"seed": options.seed, "commits_arg": options.commits, "commits": resolved}))

    def intro(shift: Shift) -> str:
        return (f"generating {len(plan.functions)} samples with {options.workers} workers; events in "
                f"{shift.out / 'events.jsonl'}")
    shown = board(intro) if board else PlainBoard(note, intro)
    report = runner.run(install_signals=True, on_start=shown.start, on_end=shown.end)
    store = Store(out_dir, readonly=True)
    try:
        counts = stage_counts(store) or {}
    finally:
        store.close()
    result = GenerateResult(complete=report.complete, stopped=report.stopped, **counts,
                            sampling=skip_summary(plan.reports), samples_file=out_dir / SAMPLES_FILE,
                            events=report.events_path)
    if report.complete and not (result.stages or {}).get("done"):
        error = NoSamples(f"generate finished with 0 samples in {out_dir}: {why_dropped(result)}")
        error.result = result
        raise error
    return result


def shift_options(options: GenerateOptions, top: Path) -> ShiftOptions:
    teacher = RoleEndpoints(base_urls=options.base_urls, model=options.model)
    student = RoleEndpoints(base_urls=options.student_base_urls, model=options.student_model) \
        if options.student_model else teacher
    return ShiftOptions(repo=top, out=options.out, model=options.model, base_urls=options.base_urls,
                        workers=options.workers, roles={"teacher": teacher, "student": student},
                        create_branches=False, deadline=options.deadline, token_budget=options.token_budget,
                        max_attempts=1, stall_s=options.stall_s, sandbox=options.sandbox,
                        agent=AgentConfig(max_steps=options.max_steps, max_wall_s=options.task_timeout_s),
                        sampling=SamplingOptions(timeout_s=options.model_timeout_s, max_retries=options.model_retries,
                                                 max_tokens=options.max_tokens, temperature=options.temperature,
                                                 tool_choice=options.tool_choice, extra_body=options.extra_body),
                        request_errors_count=True, stop_on_internal_error=True, workdir=options.workdir)


def why_dropped(result: GenerateResult) -> str:
    """`N dropped: reason (count, e.g. "first message"), ...`: why a generation produced nothing."""
    dropped = result.dropped or {}
    if not dropped:
        return "no sample was dropped either (nothing ran?)"
    examples = result.dropped_examples or {}
    parts = [f"{reason} ({count}, e.g. {examples.get(reason, '')[:200]!r})" for reason, count in
             sorted(dropped.items(), key=lambda kv: -kv[1])]
    return f"{sum(dropped.values())} dropped: " + "; ".join(parts)
