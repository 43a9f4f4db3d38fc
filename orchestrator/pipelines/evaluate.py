"""`nightowl eval`: the same tasks for each model, each model as its own resumable shift, then metrics and a verdict.

Layout: OUT/models/<model>/ is a shift directory (store, runs, events); OUT/checks.json caches whether each
task's tests fail before any change; OUT/eval.json is the result.
"""
from __future__ import annotations

import hashlib
import re
import time
from copy import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.trajectory import read_run_trajectory, write_text_atomic
from orchestrator.errors import UsageError
from orchestrator.layout import (
    CHECKS,
    ELAPSED,
    EVAL,
    RESOLVED,
    elapsed_json,
    eval_json,
    read_elapsed,
    read_task_cache,
    task_cache_json,
)
from orchestrator.pipelines.eval_checks import tests_pass
from orchestrator.shift.endpoints import probe
from orchestrator.shift.engine import Shift, ShiftOptions
from orchestrator.shift.store import Store
from orchestrator.shift.tasks import StaticTaskSource, TaskSpec
from training.evaluation.metrics import (
    METRICS,
    Comparison,
    ModelMetrics,
    TaskOutcome,
    compare,
    outcome_of,
    summarize,
)


class EvalModel(BaseModel):
    name: str
    base_url: str
    api_key_env: str = SamplingOptions.model_fields["api_key_env"].default
    price_per_mtok: float | None = Field(default=None, ge=0)
    gpu_hour_price: float | None = Field(default=None, ge=0)


class EvalOptions(BaseModel):
    repo: Path
    tasks: list[TaskSpec]
    tasks_file: Path
    models: list[EvalModel]
    out: Path
    metric: str = "recall"
    workers: int = copy(ShiftOptions.model_fields["workers"])
    max_steps: int = copy(AgentConfig.model_fields["max_steps"])
    max_tokens: int = copy(SamplingOptions.model_fields["max_tokens"])
    temperature: float = copy(SamplingOptions.model_fields["temperature"])
    tool_choice: str = copy(SamplingOptions.model_fields["tool_choice"])
    sandbox: str = "auto"
    workdir: Path | None = None
    task_timeout_s: float = copy(AgentConfig.model_fields["max_wall_s"])
    command_timeout_s: float = copy(AgentConfig.model_fields["command_timeout_s"])
    check_timeout_s: float = Field(default=600, gt=0)
    deadline: float | None = None
    bootstrap_samples: int = Field(default=10_000, gt=0)
    seed: int = 0


def model_dir(out: Path, name: str) -> Path:
    """A directory name for any model name (adapter, hub id, path), distinct for distinct names."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[-60:] or "model"
    return out / "models" / f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def validate(options: EvalOptions) -> None:
    names = [m.name for m in options.models]
    if len(set(names)) != len(names):
        raise UsageError("each --model must be named once (the same name twice would share a result)")
    if options.metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {options.metric!r}")
    for m in options.models:
        problem = probe(m.base_url.rstrip("/"), m.name, m.api_key_env)
        if problem is not None:
            raise UsageError(f"model {m.name!r} at {m.base_url}: {problem} "
                             "(start the server, or fix --base-url/--model)")


def run_model(options: EvalOptions, model: EvalModel) -> bool:
    """Runs (or resumes) one model's shift; True when every task finished. Wall time adds up across resumes."""
    directory = model_dir(options.out, model.name)
    shift = Shift(ShiftOptions(
        repo=options.repo, out=directory, model=model.name, base_urls=[model.base_url.rstrip("/")],
        workers=options.workers, create_branches=False, max_attempts=1, sandbox=options.sandbox,
        agent=AgentConfig(max_steps=options.max_steps, max_wall_s=options.task_timeout_s,
                          command_timeout_s=options.command_timeout_s),
        sampling=SamplingOptions(max_tokens=options.max_tokens, temperature=options.temperature,
                                 tool_choice=options.tool_choice, api_key_env=model.api_key_env),
        deadline=options.deadline, stop_on_internal_error=True,
        workdir=options.workdir / model.name.replace("/", "_") if options.workdir else None),
        sources=[StaticTaskSource(options.tasks, name=str(options.tasks_file))])
    started = time.monotonic()
    report = shift.run(install_signals=True)
    elapsed_path = directory / ELAPSED
    write_text_atomic(elapsed_path, elapsed_json((read_elapsed(elapsed_path) or 0.0) + time.monotonic() - started))
    return report.complete


def fails_before(options: EvalOptions) -> dict[str, bool]:
    """Which tasks' checks fail at the start commit (only those can show a resolve); cached in OUT/checks.json."""
    path = options.out / CHECKS
    cache = read_task_cache(path)
    for spec in options.tasks:
        if spec.tests is not None and spec.id not in cache:
            cache[spec.id] = not tests_pass(options.repo, spec.commit, spec.tests, "", options.sandbox,
                                            options.check_timeout_s)
            write_text_atomic(path, task_cache_json(cache))
    return cache


def outcomes(options: EvalOptions, model: EvalModel, failing: dict[str, bool]) -> list[TaskOutcome]:
    directory = model_dir(options.out, model.name)
    store = Store(directory, readonly=True)
    try:
        results = {r["task_id"]: r for r in store.results()}
    finally:
        store.close()
    resolved_path = directory / RESOLVED
    resolved = read_task_cache(resolved_path)
    found = []
    for spec in options.tasks:
        row = results.get(spec.id)
        traj = read_run_trajectory(Path(row["run_dir"])) if row else None
        traj = traj or None
        if spec.tests is not None and failing.get(spec.id) and spec.id not in resolved:
            patch = traj.get("patch", "") if traj and traj.get("exit_status") == "submitted" else ""
            resolved[spec.id] = bool(patch) and tests_pass(options.repo, spec.commit, spec.tests, patch,
                                                          options.sandbox, options.check_timeout_s)
            write_text_atomic(resolved_path, task_cache_json(resolved))
        found.append(outcome_of(spec.id, traj, spec.reference_patch, resolved.get(spec.id)))
    return found


class EvalResult(BaseModel):
    """OUT/eval.json: per-model metrics, B's verdict against A (the first model), and every task's outcome."""
    tasks_file: str
    repo: str
    complete: bool
    """Whether every model finished every task (False: stopped by the deadline or a signal; re-run to resume)."""
    metric: str
    models: list[ModelMetrics]
    comparison: Comparison | None
    comparisons: list[Comparison]
    per_task: dict[str, list[TaskOutcome]]

    def printed(self) -> dict[str, Any]:
        """What `nightowl eval --json` prints (and the flywheel keeps): everything but the per-task outcomes."""
        return self.model_dump(mode="json", exclude={"per_task"})


def run_eval(options: EvalOptions) -> EvalResult:
    """Runs (or resumes) every model's shift; the result is also written to OUT/eval.json."""
    validate(options)
    options.out.mkdir(parents=True, exist_ok=True)
    complete = all([run_model(options, m) for m in options.models])
    failing = fails_before(options)
    per_model = {m.name: outcomes(options, m, failing) for m in options.models}
    metrics = [summarize(m.name, per_model[m.name], m.price_per_mtok, m.gpu_hour_price,
                         read_elapsed(model_dir(options.out, m.name) / ELAPSED))
               for m in options.models]
    a = options.models[0].name
    comparisons = [compare(a, per_model[a], m.name, per_model[m.name], options.metric, options.bootstrap_samples,
                           options.seed) for m in options.models[1:]]
    result = EvalResult(tasks_file=str(options.tasks_file), repo=str(options.repo), complete=complete,
                        metric=options.metric, models=metrics, comparison=comparisons[0] if comparisons else None,
                        comparisons=comparisons, per_task=per_model)
    write_text_atomic(options.out / EVAL, eval_json(result.model_dump(mode="json")))
    return result
