"""A training directory: DIR/training_report.json with loss curves and whatever else the trainer recorded.

Every top-level list of {step, <number>} objects is drawn as a curve (loss, eval_loss, ...); other scalar
fields go to the summary, so fields added later show up without a change here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.file_format import FIELD, NewerFormatError
from orchestrator.layout import TRAINING_REPORT as REPORT
from orchestrator.layout import TRAINING_REPORT_FILE
from orchestrator.report.files import read_json
from orchestrator.report.model import ReportOptions, Section
from orchestrator.report.svg import line_chart


def detect(directory: Path) -> bool:
    return (directory / REPORT).is_file()


def curve(values: list[Any]) -> dict[str, list[tuple[float, float]]]:
    """{metric: [(step, value)]} for a list of {step, metric...} records; empty if it is not such a list."""
    series: dict[str, list[tuple[float, float]]] = {}
    for item in values:
        if not isinstance(item, dict) or not isinstance(item.get("step"), (int, float)):
            return {}
        for key, value in item.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((float(item["step"]), float(value)))
    return series


def collect(directory: Path, options: ReportOptions) -> Section:
    try:
        data = read_json(directory / REPORT, TRAINING_REPORT_FILE)
    except NewerFormatError:
        raise
    except ValueError as e:
        return Section(kind="training", title=f"Training {directory.name}", notes=[f"{REPORT} is not valid JSON: {e}"])
    if not isinstance(data, dict):
        return Section(kind="training", title=f"Training {directory.name}", notes=[f"{REPORT} does not hold an object"])
    curves: dict[str, list[tuple[float, float]]] = {}
    summary = []
    for key, value in data.items():
        if key == FIELD:
            continue
        if isinstance(value, list) and (found := curve(value)):
            curves.update(found)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            summary.append((key, str(value)))
        else:
            summary.append((key, json.dumps(value, ensure_ascii=False)[:300]))
    plots = []
    if {"loss", "eval_loss"} <= curves.keys():
        plots.append(line_chart("training and eval loss", {k: curves.pop(k) for k in ("loss", "eval_loss")},
                                "step", "loss"))
    plots += [line_chart(f"{name} by step", {name: points}, "step", name) for name, points in curves.items()]
    return Section(kind="training", title=f"Training {directory.name}", summary=summary, plots=plots,
                   notes=[] if plots else [f"{REPORT} holds no loss curve"])
