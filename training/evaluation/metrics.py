"""Eval metrics from trajectories, and a paired bootstrap comparison of two models on the same tasks."""
from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from statistics import mean
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from training.synthesis.recall import line_recall, recall_histogram


class TaskOutcome(BaseModel):
    task_id: str
    exit_status: str
    """`missing` when the task has no trajectory (it never ran to the end)."""
    submitted: bool
    steps: int
    valid_steps: int
    """Steps whose reply held at least one tool call and no call that failed to parse."""
    tokens: int
    wall_s: float
    recall: float | None
    """Line recall of the reference patch's changed lines in the submitted patch (0 without a submission);
    None when the task has no reference patch."""
    resolved: bool | None = None
    """The task's tests pass after the patch (they failed before); None without such a check."""


class ModelMetrics(BaseModel):
    model: str
    tasks: int
    tool_call_validity: float | None
    submit_rate: float
    mean_recall: float | None
    recall_distribution: dict[str, int]
    resolve_rate: float | None
    resolve_tasks: int
    mean_steps: float
    mean_tokens: float
    mean_wall_s: float
    cost_per_task: float | None
    cost_basis: str | None
    exit_status: dict[str, int]


class Comparison(BaseModel):
    a: str
    b: str
    metric: str
    tasks: int
    """Tasks both models have a value for (the pairs)."""
    diff: float | None
    ci: list[float] | None
    verdict: Literal["better", "not shown", "worse"]


def seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def outcome_of(task_id: str, trajectory: dict[str, Any] | None, reference_patch: str | None,
               resolved: bool | None = None) -> TaskOutcome:
    reference = reference_patch if reference_patch else None
    if trajectory is None:
        return TaskOutcome(task_id=task_id, exit_status="missing", submitted=False, steps=0, valid_steps=0, tokens=0,
                           wall_s=0.0, recall=0.0 if reference else None, resolved=resolved)
    steps = trajectory.get("steps", [])
    valid = sum(1 for s in steps if s.get("executions") and not s.get("parse_errors"))
    submitted = trajectory.get("exit_status") == "submitted"
    recall = None
    if reference:
        measured = line_recall(reference, trajectory.get("patch", "") if submitted else "").recall
        recall = measured if measured is not None else None
    return TaskOutcome(task_id=task_id, exit_status=str(trajectory.get("exit_status")), submitted=submitted,
                       steps=len(steps), valid_steps=valid,
                       tokens=int(trajectory.get("usage", {}).get("total_tokens", 0)),
                       wall_s=seconds_between(trajectory.get("started_at"), trajectory.get("finished_at")),
                       recall=recall, resolved=resolved)


class Metric(NamedTuple):
    name: str
    """What `--metric` takes."""
    field: str
    """The `ModelMetrics` field that holds a model's value (eval.json's `models`)."""
    label: str
    column: int
    """Where the metric sits among the others in the metrics tables."""
    per_task: Callable[[TaskOutcome], float | None]
    """One task's number for a paired comparison (None: the task has no value)."""
    per_model: Callable[[list[TaskOutcome]], float | None]


def share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def mean_recall(outcomes: list[TaskOutcome]) -> float | None:
    recalls = [o.recall for o in outcomes if o.recall is not None]
    return mean(recalls) if recalls else None


def step_validity(outcomes: list[TaskOutcome]) -> float | None:
    steps = sum(o.steps for o in outcomes)
    return sum(o.valid_steps for o in outcomes) / steps if steps else None


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("recall", "mean_recall", "mean recall", 3, lambda o: o.recall, mean_recall),
    Metric("submit", "submit_rate", "submit rate", 2, lambda o: 1.0 if o.submitted else 0.0,
           lambda found: share([o.submitted for o in found]) if found else 0.0),
    Metric("resolve", "resolve_rate", "resolve rate", 4,
           lambda o: None if o.resolved is None else float(o.resolved),
           lambda found: share([o.resolved for o in found if o.resolved is not None])),
    Metric("validity", "tool_call_validity", "tool-call validity", 1,
           lambda o: o.valid_steps / o.steps if o.steps else 0.0, step_validity),
]}
"""Every eval metric, in one place: `--metric`, the per-model summary, the comparison, the tables and the report
take them from here. A new metric is one entry here and its field in `ModelMetrics`."""
SHOWN = sorted(METRICS.values(), key=lambda m: m.column)
"""The metrics in table order."""


def value(outcome: TaskOutcome, metric: str) -> float | None:
    """One task's number for a paired comparison."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")
    return METRICS[metric].per_task(outcome)


def summarize(model: str, outcomes: list[TaskOutcome], price_per_mtok: float | None = None,
              gpu_hour_price: float | None = None, elapsed_s: float | None = None) -> ModelMetrics:
    """`price_per_mtok`: USD per million tokens; `gpu_hour_price` with `elapsed_s`: self-hosted cost per task."""
    n = len(outcomes)
    steps = sum(o.steps for o in outcomes)
    recalls = [o.recall for o in outcomes if o.recall is not None]
    checks = [o.resolved for o in outcomes if o.resolved is not None]
    mean_tokens = mean(o.tokens for o in outcomes) if n else 0.0
    cost, basis = None, None
    if price_per_mtok is not None:
        cost, basis = mean_tokens * price_per_mtok / 1e6, f"{price_per_mtok:g} USD per million tokens"
    elif gpu_hour_price is not None and elapsed_s is not None and n:
        cost, basis = elapsed_s / 3600 * gpu_hour_price / n, f"{gpu_hour_price:g} USD per GPU-hour, {elapsed_s:.0f} s"
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[o.exit_status] = statuses.get(o.exit_status, 0) + 1
    return ModelMetrics(
        model=model, tasks=n, **{m.field: m.per_model(outcomes) for m in METRICS.values()},
        recall_distribution=recall_histogram(recalls), resolve_tasks=len(checks),
        mean_steps=steps / n if n else 0.0, mean_tokens=mean_tokens,
        mean_wall_s=mean(o.wall_s for o in outcomes) if n else 0.0, cost_per_task=cost, cost_basis=basis,
        exit_status=statuses)


def paired_bootstrap(a: list[float], b: list[float], samples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean of b - a over the pairs, and a percentile interval from resampling the pairs."""
    if len(a) != len(b) or not a:
        raise ValueError("a paired bootstrap needs the same, non-zero number of values on both sides")
    diffs = [y - x for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1 - confidence) / 2
    low = means[int(tail * (samples - 1))]
    high = means[int(round((1 - tail) * (samples - 1)))]
    return sum(diffs) / n, (low, high)


def compare(a_name: str, a: list[TaskOutcome], b_name: str, b: list[TaskOutcome], metric: str,
            samples: int = 10_000, seed: int = 0) -> Comparison:
    """B against A on the tasks both have a value for; `better` only when the whole interval is above zero."""
    by_id = {o.task_id: o for o in a}
    pairs = [(value(by_id[o.task_id], metric), value(o, metric)) for o in b if o.task_id in by_id]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return Comparison(a=a_name, b=b_name, metric=metric, tasks=0, diff=None, ci=None, verdict="not shown")
    diff, (low, high) = paired_bootstrap([x for x, _ in pairs], [y for _, y in pairs], samples, seed)
    verdict = "better" if low > 0 else "worse" if high < 0 else "not shown"
    return Comparison(a=a_name, b=b_name, metric=metric, tasks=len(pairs), diff=diff, ci=[low, high], verdict=verdict)


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def metrics_table(models: list[dict[str, Any]]) -> list[str]:
    """A markdown table of `ModelMetrics` dumps, one row per model."""
    header = ["model", "tasks", *(m.label for m in SHOWN), "mean steps", "mean tokens", "cost/task"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [str(m["model"]), str(m["tasks"]), *(fmt(m.get(metric.field)) for metric in SHOWN),
                 fmt(m["mean_steps"], 1), f"{m['mean_tokens']:.0f}", fmt(m["cost_per_task"], 4)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
