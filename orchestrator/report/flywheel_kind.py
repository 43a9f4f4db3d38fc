"""A flywheel directory (`nightowl flywheel --out DIR`): DIR/rounds.jsonl, DIR/best.json and DIR/round-N/.

A rounds.jsonl line: round, candidate, against, promoted, verdict, metric, diff, ci, best, seconds (per step).
Each round-N holds report.md, the eval (round-N/eval/eval.json, or the eval step's round-N/eval.json) and the
training output (round-N/adapter/training_report.json, or one found up to two levels down).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.file_format import FileFormat, NewerFormatError
from orchestrator.layout import (
    BEST,
    BEST_FILE,
    EVAL,
    EVAL_FILE,
    ROUND_LINE,
    ROUND_REPORT,
    ROUND_STEP_FILE,
    ROUNDS,
    TRAINING_REPORT,
    TRAINING_REPORT_FILE,
)
from orchestrator.report.eval_kind import METRIC_FIELDS, fmt
from orchestrator.report.files import read_json, read_jsonl, read_text
from orchestrator.report.generate_kind import number
from orchestrator.report.model import Column, ReportOptions, Section
from orchestrator.report.svg import line_chart
from orchestrator.report.training_kind import curve

COLUMNS = [Column(key="round", label="round", type="number"), Column(key="candidate", label="candidate"),
           Column(key="against", label="against"), Column(key="metric", label="metric", type="status"),
           Column(key="candidate_value", label="candidate", type="number"),
           Column(key="against_value", label="against", type="number"), Column(key="diff", label="diff", type="number"),
           Column(key="ci", label="95% CI"), Column(key="verdict", label="verdict", type="status"),
           Column(key="promoted", label="promoted", type="status"), Column(key="best", label="best after"),
           Column(key="seconds", label="seconds", type="number")]


def detect(directory: Path) -> bool:
    return (directory / ROUNDS).is_file()


def read_object(path: Path, file_format: FileFormat) -> dict[str, Any]:
    """The JSON object in the file, or {} when it is missing, torn or not an object; a newer format is refused."""
    try:
        data = read_json(path, file_format)
    except NewerFormatError:
        raise
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def round_eval(round_dir: Path) -> dict[str, Any]:
    return read_object(round_dir / "eval" / EVAL, EVAL_FILE) or read_object(round_dir / EVAL, ROUND_STEP_FILE)


def training_report(round_dir: Path) -> Path | None:
    for pattern in (f"adapter/{TRAINING_REPORT}", TRAINING_REPORT, f"*/{TRAINING_REPORT}", f"*/*/{TRAINING_REPORT}"):
        found = sorted(round_dir.glob(pattern))
        if found:
            return found[0]
    return None


def metric_of(evaluation: dict[str, Any], model: Any, metric: Any) -> float | None:
    """The compared metric's per-model value (e.g. mean_recall for `recall`) from the round's eval."""
    field = METRIC_FIELDS.get(str(metric))
    found = [m for m in evaluation.get("models") or [] if isinstance(m, dict) and m.get("model") == model]
    return number(found[0].get(field)) if found and field else None


def bounds(ci: Any) -> tuple[float | None, float | None]:
    return (number(ci[0]), number(ci[1])) if isinstance(ci, list) and len(ci) == 2 else (None, None)


def round_row(line: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    low, high = bounds(line.get("ci"))
    seconds = line.get("seconds")
    total = (sum(v for v in (number(s) for s in seconds.values()) if v is not None) if isinstance(seconds, dict)
             else None)
    return {"round": number(line.get("round")), "candidate": str(line.get("candidate", "")),
            "against": str(line.get("against", "")), "metric": str(line.get("metric", "")),
            "candidate_value": metric_of(evaluation, line.get("candidate"), line.get("metric")),
            "against_value": metric_of(evaluation, line.get("against"), line.get("metric")),
            "diff": number(line.get("diff")),
            "ci": f"[{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else "-",
            "_ci": [low, high],
            "verdict": str(line.get("verdict", "")), "promoted": "yes" if line.get("promoted") else "no",
            "best": str(line.get("best", "")), "seconds": total, "_views": []}


def collect(directory: Path, options: ReportOptions) -> Section:
    lines, bad = read_jsonl(directory / ROUNDS, ROUND_LINE)
    lines.sort(key=lambda x: number(x.get("round")) or 0)
    rows, losses, texts, notes = [], {}, [], [f"{bad} unreadable line(s) in {ROUNDS}"] if bad else []
    for line in lines:
        round_dir = directory / f"round-{line.get('round')}"
        rows.append(round_row(line, round_eval(round_dir)))
        if (path := training_report(round_dir)) is not None:
            loss = curve(read_object(path, TRAINING_REPORT_FILE).get("loss") or []).get("loss")
            if loss:
                losses[f"round {line.get('round')}"] = loss
        if (round_dir / ROUND_REPORT).is_file():
            texts.append((f"round {line.get('round')}: {ROUND_REPORT}", read_text(round_dir / ROUND_REPORT)))
    best = read_object(directory / BEST, BEST_FILE)
    current = str(best.get("model") or (rows[-1]["best"] if rows else "?"))
    summary = [("rounds", str(len(rows))), ("promoted", str(sum(r["promoted"] == "yes" for r in rows))),
               ("current best", current + (f" (round {best['round']}, adapter {best.get('adapter')})"
                                           if best.get("adapter") else ""))]
    by_round = [r for r in rows if r["round"] is not None]
    metric = ", ".join(sorted({r["metric"] for r in rows})) or "metric"
    plots = [line_chart(f"eval {metric} per round: candidate vs the best before it",
                        {"candidate": [(r["round"], r["candidate_value"]) for r in by_round
                                       if r["candidate_value"] is not None],
                         "best before": [(r["round"], r["against_value"]) for r in by_round
                                         if r["against_value"] is not None]}, "round", metric),
             line_chart("difference per round (candidate - best) with its 95% CI",
                        {"difference": [(r["round"], r["diff"]) for r in by_round if r["diff"] is not None],
                         **{bound: [(r["round"], r["_ci"][i]) for r in by_round if r["_ci"][i] is not None]
                            for i, bound in enumerate(("CI low", "CI high"))}}, "round", "difference")]
    if losses:
        plots.append(line_chart("training loss per round", losses, "step", "loss"))
    if not rows:
        notes.append(f"{ROUNDS} holds no finished round yet")
    return Section(kind="flywheel", title=f"Flywheel {directory.name}", summary=summary, plots=plots, columns=COLUMNS,
                   rows=rows, texts=texts, notes=notes)
