"""An eval directory (`nightowl eval --out DIR`): DIR/eval.json, and one shift directory per model under DIR/models.

eval.json holds `models` (per-model metrics), `comparison` (B against A: diff, CI, verdict), and, when present,
`comparisons` (every model against the first) and `per_task` ({model: [task outcomes]}). Missing or unknown
fields are shown as "-" or skipped, so an older eval.json still renders (a newer format is refused).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.file_format import NewerFormatError
from orchestrator.layout import EVAL, EVAL_FILE, EVAL_MODELS
from orchestrator.report import shift_kind
from orchestrator.report.files import read_json
from orchestrator.report.generate_kind import number
from orchestrator.report.model import Column, ReportOptions, Section, Table
from orchestrator.report.svg import bar_chart, histogram
from training.evaluation.metrics import METRICS, SHOWN

METRIC_FIELDS = {m.name: m.field for m in METRICS.values()}
"""The per-model field behind each comparison metric (`--metric`)."""
TABLE_FIELDS = [("tasks", "tasks", 0), *((m.label, m.field, 3) for m in SHOWN), ("mean steps", "mean_steps", 1),
                ("mean tokens", "mean_tokens", 0), ("mean wall s", "mean_wall_s", 1), ("cost/task", "cost_per_task", 4)]
PLOTTED = [*(m.field for m in SHOWN), "mean_tokens", "cost_per_task"]
COLUMNS = [Column(key="task", label="task"), Column(key="model", label="model", type="status"),
           Column(key="result", label="result", type="status"),
           Column(key="submitted", label="submitted", type="status"),
           Column(key="steps", label="steps", type="number"), Column(key="tokens", label="tokens", type="number"),
           Column(key="time_s", label="time s", type="number"), Column(key="recall", label="recall", type="number"),
           Column(key="resolved", label="resolved", type="status")]


def detect(directory: Path) -> bool:
    return (directory / EVAL).is_file()


def fmt(value: Any, digits: int = 3) -> str:
    found = number(value)
    return "-" if found is None else f"{found:.{digits}f}"


def interval(c: dict[str, Any]) -> str:
    ci = c.get("ci")
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else "-"


def comparison_line(c: dict[str, Any]) -> str:
    """'B vs A on recall: +0.250, 95% CI [0.100, 0.400] over 8 tasks: better'."""
    diff = number(c.get("diff"))
    over = f" over {c['tasks']} tasks" if isinstance(c.get("tasks"), int) else ""
    return (f"{c.get('b', '?')} vs {c.get('a', '?')} on {c.get('metric', '?')}: "
            f"{'-' if diff is None else f'{diff:+.3f}'}, 95% CI {interval(c)}{over}: {c.get('verdict', '?')}")


def metrics_table(models: list[dict[str, Any]]) -> Table:
    return Table(title="per-model metrics", header=["model", *(label for label, _, _ in TABLE_FIELDS), "cost basis"],
                 rows=[[str(m.get("model", "?")), *(fmt(m.get(key), digits) for _, key, digits in TABLE_FIELDS),
                        str(m.get("cost_basis") or "-")] for m in models])


def comparisons_table(comparisons: list[dict[str, Any]]) -> Table:
    return Table(title="paired comparison (B against A, paired bootstrap)",
                 header=["A", "B", "metric", "tasks", "difference B - A", "95% CI", "verdict"],
                 rows=[[str(c.get("a", "?")), str(c.get("b", "?")), str(c.get("metric", "?")), str(c.get("tasks", "-")),
                        fmt(c.get("diff")), interval(c),
                        str(c.get("verdict", "?"))] for c in comparisons])


def metric_plots(models: list[dict[str, Any]]) -> list[str]:
    """A bar chart per metric across models (skipping metrics no model has), and each model's recall histogram."""
    plots = []
    for key in PLOTTED:
        items = [(str(m.get("model", "?")), number(m.get(key))) for m in models]
        if any(v is not None for _, v in items):
            plots.append(bar_chart(key.replace("_", " "), [(label, v) for label, v in items if v is not None]))
    for m in models:
        bins = m.get("recall_distribution")
        if isinstance(bins, dict) and bins:
            counts = [(str(k), int(number(v) or 0)) for k, v in bins.items()]
            plots.append(histogram(f"recall of {m.get('model', '?')}", counts, "line recall", "tasks"))
    return plots


def model_shifts(directory: Path, options: ReportOptions) -> dict[str, Section]:
    """Each per-model shift under DIR/models, by the model its shift ran (read from its own summary)."""
    models = directory / EVAL_MODELS
    shifts = {}
    for sub in sorted(models.iterdir()) if models.is_dir() else []:
        if shift_kind.detect(sub):
            section = shift_kind.collect(sub, options)
            shifts[dict(section.summary).get("model", sub.name)] = section
    return shifts


def renamed(section: Section, prefix: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """A sub-shift's views by task and its trajectories, under refs that stay unique beside the other models'."""
    views = {str(r["task"]): [{**v, "ref": f"{prefix}{v['ref']}" if v.get("ref") else None} for v in r["_views"]]
             for r in section.rows}
    return views, {f"{prefix}{ref}": view for ref, view in section.trajectories.items()}


def task_rows(per_task: dict[str, Any], shifts: dict[str, Section]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per model and task: the eval's outcome where recorded, else the shift's row; the shift's trajectories."""
    rows, trajectories = [], {}
    names = list(per_task) + [name for name in shifts if name not in per_task]
    for i, name in enumerate(names):
        views, refs = renamed(shifts[name], f"m{i}-") if name in shifts else ({}, {})
        trajectories.update(refs)
        outcomes = per_task.get(name)
        if isinstance(outcomes, list):
            for o in (o for o in outcomes if isinstance(o, dict)):
                task = str(o.get("task_id", "?"))
                resolved = o.get("resolved")
                rows.append({"model": name, "task": task, "result": str(o.get("exit_status", "")),
                             "submitted": "yes" if o.get("submitted") else "no", "steps": number(o.get("steps")),
                             "tokens": number(o.get("tokens")), "time_s": number(o.get("wall_s")),
                             "recall": number(o.get("recall")),
                             "resolved": "" if resolved is None else "yes" if resolved else "no",
                             "_views": views.get(task, [])})
        else:
            rows += [{"model": name, "task": r["task"], "result": r["result"],
                      "submitted": "yes" if r["result"] == "submitted" else "no", "steps": r["steps"],
                      "tokens": r["tokens"], "time_s": r["time_s"], "recall": None, "resolved": "",
                      "_views": views.get(str(r["task"]), [])} for r in shifts[name].rows]
    return rows, trajectories


def collect(directory: Path, options: ReportOptions) -> Section:
    title = f"Eval {directory.name}"
    try:
        data = read_json(directory / EVAL, EVAL_FILE)
    except NewerFormatError:
        raise
    except ValueError as e:
        return Section(kind="eval", title=title, notes=[f"{EVAL} is not valid JSON: {e}"])
    if not isinstance(data, dict):
        return Section(kind="eval", title=title, notes=[f"{EVAL} does not hold an object"])
    models = [m for m in data.get("models") or [] if isinstance(m, dict)]
    comparisons = [c for c in data.get("comparisons") or [data.get("comparison")] if isinstance(c, dict)]
    summary = [(key, str(data[key])) for key in ("tasks_file", "repo", "metric", "complete") if key in data]
    summary += [("models", ", ".join(str(m.get("model", "?")) for m in models) or "none")]
    summary += [("comparison" if len(comparisons) == 1 else f"comparison {i + 1}", comparison_line(c))
                for i, c in enumerate(comparisons)]
    per_task = data.get("per_task") if isinstance(data.get("per_task"), dict) else {}
    rows, trajectories = task_rows(per_task, model_shifts(directory, options))
    tables = ([metrics_table(models)] if models else []) + ([comparisons_table(comparisons)] if comparisons else [])
    notes = [] if models else [f"{EVAL} lists no models"]
    return Section(kind="eval", title=title, summary=summary, tables=tables, plots=metric_plots(models),
                   columns=COLUMNS if rows else [], rows=rows, trajectories=trajectories, notes=notes)
