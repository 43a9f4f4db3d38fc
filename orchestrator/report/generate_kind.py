"""A generation directory (`nightowl generate`): DIR/samples.jsonl, one soft-verified sample per line.

Each sample names its two runs (T1 changes a function, T2 reproduces the change from the PR text) and the
line-level recall of T2's patch against T1's.
"""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.layout import SAMPLE_LINE, SAMPLES
from orchestrator.report.files import read_jsonl, resolve
from orchestrator.report.model import Column, ReportOptions, Section
from orchestrator.report.plots import recall_histogram, status_breakdown
from orchestrator.report.trajview import Trajectories, duration, usage_lines

COLUMNS = [Column(key="id", label="sample"), Column(key="category", label="category", type="status"),
           Column(key="language", label="language", type="status"), Column(key="file", label="file"),
           Column(key="function", label="function"), Column(key="recall", label="recall", type="number"),
           Column(key="matched", label="matched / total"), Column(key="t1", label="T1", type="status"),
           Column(key="t2", label="T2", type="status"), Column(key="steps", label="steps", type="number"),
           Column(key="tokens", label="tokens", type="number"), Column(key="time_s", label="time s", type="number"),
           Column(key="pr", label="PR text")]


def detect(directory: Path) -> bool:
    return (directory / SAMPLES).is_file()


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def collect(directory: Path, options: ReportOptions) -> Section:
    samples, bad = read_jsonl(directory / SAMPLES, SAMPLE_LINE)
    trajectories = Trajectories("g")
    rows = []
    for i, s in enumerate(samples):
        t1_view, t1 = trajectories.add("T1 (change)", resolve(directory, s.get("t1_run_dir")),
                                       str(s.get("t1_patch") or ""))
        t2_view, t2 = trajectories.add("T2 (from the PR text)", resolve(directory, s.get("t2_run_dir")),
                                       str(s.get("t2_patch") or ""))
        runs = [t for t in (t1, t2) if t]
        times = [t.duration_s for t in runs if t.duration_s is not None]
        rows.append({
            "id": str(s.get("id", i)), "category": str(s.get("category", "")), "language": str(s.get("language", "")),
            "file": str(s.get("file", "")), "function": str(s.get("function", "")), "recall": number(s.get("recall")),
            "matched": f"{s.get('matched', '?')} / {s.get('total', '?')}",
            "t1": t1.exit_status if t1 else "missing", "t2": t2.exit_status if t2 else "missing",
            "steps": sum(t.steps for t in runs), "tokens": sum(t.total_tokens for t in runs),
            "time_s": round(sum(times), 2) if times else None, "pr": str(s.get("pr") or "")[:200],
            "_views": [t1_view, t2_view]})
    recalls = [r["recall"] for r in rows]
    defined = [r for r in recalls if r is not None]
    summary = [("samples", str(len(rows))),
               ("recall", f"mean {statistics.fmean(defined):.3f}, median {statistics.median(defined):.3f}, "
                          f"{sum(r >= 1.0 for r in defined)} at 1.0" if defined else "none defined"),
               ("recall undefined (T1 changed no line)", str(len(recalls) - len(defined))),
               ("time in runs (sum)", duration(sum(r["time_s"] or 0 for r in rows))),
               *usage_lines(trajectories.stats, options.usd_per_mtok)]
    plots = [recall_histogram(recalls), status_breakdown("samples by category", Counter(r["category"] for r in rows))]
    notes = [f"{bad} unreadable line(s) in {SAMPLES}"] if bad else []
    return Section(kind="generate", title=f"Generated samples {directory.name}", summary=summary, plots=plots,
                   columns=COLUMNS, rows=rows, trajectories=trajectories.views, notes=notes)
