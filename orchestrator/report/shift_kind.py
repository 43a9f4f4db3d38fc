"""A shift directory (`nightowl shift --out DIR`): its store, events, run directories and summary.md."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.layout import EVENT_LINE, EVENTS, RUNS, SUMMARY
from orchestrator.report.files import read_jsonl, read_text
from orchestrator.report.model import Column, ReportOptions, Section
from orchestrator.report.plots import finished_over_time, status_breakdown, tokens_per_second
from orchestrator.report.trajview import Trajectories, duration, usage_lines
from orchestrator.shift.store import DB_NAME, AttemptRow, Store

COLUMNS = [Column(key="task", label="task"), Column(key="state", label="state", type="status"),
           Column(key="result", label="result", type="status"), Column(key="attempts", label="attempts", type="number"),
           Column(key="steps", label="steps", type="number"), Column(key="tokens", label="tokens", type="number"),
           Column(key="time_s", label="time s", type="number"), Column(key="branch", label="branch"),
           Column(key="what", label="what")]


def detect(directory: Path) -> bool:
    return (directory / DB_NAME).is_file()


def run_dir_of(directory: Path, attempt: AttemptRow) -> Path:
    """The attempt's run directory; the recorded path, or the same name under DIR/runs when DIR was moved."""
    recorded = Path(attempt.run_dir)
    return recorded if recorded.is_dir() else directory / RUNS / attempt.run_id


def clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "?"


def collect(directory: Path, options: ReportOptions) -> Section:
    store = Store(directory, readonly=True)
    try:
        counts, tasks, attempts, results = store.counts(), store.tasks(), store.attempts(), store.results()
        repo = store.shift_setting("repo")
    finally:
        store.close()
    events, bad_events = read_jsonl(directory / EVENTS, EVENT_LINE) if (directory / EVENTS).is_file() else ([], 0)
    starts = [e for e in events if e.get("event") == "shift_start"]
    ends = [e for e in events if e.get("event") == "shift_end"]
    by_task: dict[str, list[AttemptRow]] = {}
    for a in attempts:
        by_task.setdefault(a.task_id, []).append(a)
    result_of = {r["task_id"]: r for r in results}
    trajectories = Trajectories("s")
    rows: list[dict[str, Any]] = []
    for task in tasks:
        tries = by_task.get(task.id, [])
        result = result_of.get(task.id)
        final = next((a for a in tries if result and a.id == result["attempt_id"]), tries[-1] if tries else None)
        views = [trajectories.add(f"attempt {i + 1}: {a.exit_status or a.state}", run_dir_of(directory, a))[0]
                 for i, a in enumerate(tries)]
        rows.append({
            "task": task.id, "state": task.state,
            "result": result["exit_status"] if result else (final.exit_status or final.state) if final else "",
            "attempts": len(tries), "steps": final.steps if final else 0, "tokens": final.tokens if final else 0,
            "time_s": round(final.finished_at - final.started_at, 2) if final and final.finished_at else None,
            "branch": (result or {}).get("branch") or "",
            "what": task.task.strip().splitlines()[0][:160] if task.task.strip() else "",
            "_views": views, "_error": task.error or ""})
    started = (starts[0]["ts"] if starts else None) or min((a.started_at for a in attempts), default=None)
    finished = max((a.finished_at or a.heartbeat_at for a in attempts), default=None)
    ended = ends[-1] if ends else None
    st = counts["states"]
    summary = [("repository", str(repo or "?")), ("model", str(starts[-1].get("model", "?")) if starts else "?"),
               ("tasks", f"{counts['tasks']}: {st['done']} done, {st['failed']} failed, {st['queued']} queued, "
                         f"{st['running']} running"),
               ("attempts", str(counts["attempts"])),
               ("started", clock(started)), ("last activity", clock(finished)),
               ("wall time", duration(finished - started if started and finished else None)),
               ("agent time (sum of attempts)", duration(sum((a.finished_at or a.heartbeat_at) - a.started_at
                                                             for a in attempts))),
               *usage_lines(trajectories.stats, options.usd_per_mtok)]
    if ended and ended.get("stopped"):
        summary.append(("stopped early", str(ended["stopped"])))
    notes = [f"{bad_events} unreadable line(s) in {EVENTS}"] if bad_events else []
    statuses = Counter(r["result"] or r["state"] for r in rows)
    step_tokens = [p for s in trajectories.stats for p in s.step_tokens]
    plots = [finished_over_time([r["recorded_at"] for r in results], started or 0.0),
             tokens_per_second(step_tokens, started or min((p[0] for p in step_tokens), default=0.0)),
             status_breakdown("tasks by result", statuses)]
    texts = [(SUMMARY, read_text(directory / SUMMARY))] if (directory / SUMMARY).is_file() else []
    return Section(kind="shift", title=f"Shift {directory.name}", summary=summary, plots=plots, columns=COLUMNS,
                   rows=rows, trajectories=trajectories.views, texts=texts, notes=notes)
