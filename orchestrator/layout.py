"""Every file nightowl writes, by name, and the format version of each JSON and JSONL one.

Format versions, one convention for every file: a top-level field `"format": "nightowl.<kind>/<N>"`, once per
JSON file and on every line of a JSONL file (lines are appended by different runs, so each says what it is).
N grows when a change would mislead an older reader. A file or line without the field was written before
versions existed and reads as version 1. A reader refuses a newer N in one line: "<path> was written by a newer
nightowl (format N, this one reads up to M): upgrade nightowl" (agent/file_format.py). Exceptions, on purpose:
train.jsonl / val.jsonl rows stay plain `{"messages", "tools", "metadata"}` for other trainers (dataset.json
beside them carries their format), and store.sqlite versions itself by its schema migrations.

`nightowl run --out OUT`, and each attempt of a shift: OUT/<run-id>/
    trajectory.json (TRAJECTORY_FILE), patch.diff, answer.txt (chat tasks), vllm.log
`nightowl shift --out DIR` (also each model of an eval, and a generation):
    shift.sqlite (the store), shift.lock, events.jsonl (EVENT_LINE), summary.md, runs/<task-id>.<n>/, workspaces/
`nightowl generate --out DIR`: the shift's files, samples.jsonl (SAMPLE_LINE), demonstrations.json (DEMONSTRATIONS_FILE)
`nightowl eval --out DIR`: eval.json (EVAL_FILE), models/<model>/ (a shift each)
`nightowl flywheel --out DIR`: rounds.jsonl (ROUND_LINE), best.json (BEST_FILE), best -> the promoted adapter,
    round-N/ (report.md, <step>.json: each finished step's record, generate/, dataset/, adapter/, eval/)
`nightowl export --out DIR` / `nightowl train --out DIR`: training/layout.py (dataset.json, train.jsonl,
    val.jsonl, training_report.json)
`nightowl bench-history`: nightowl-holdout.json (HOLDOUT_FILE) in the repository's git directory

The resume records only the command that wrote them reads are versioned the same way: eval's checks.json and
models/<model>/resolved.json (TASK_CACHE: {"format", "tasks": {task id: bool}}; a file from before versions is
the bare mapping), models/<model>/elapsed.json (ELAPSED_FILE) and the flywheel's round-N/<step>.json
(ROUND_STEP_FILE).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.file_format import FileFormat
from agent.trajectory import PATCH_NAME, TRAJECTORY_FILE, TRAJECTORY_NAME
from training.layout import (
    DATASET_CARD,
    DATASET_FILE,
    DEMONSTRATIONS,
    DEMONSTRATIONS_FILE,
    HOLDOUT_FILE,
    HOLDOUT_RECORD,
    RUNS,
    SAMPLE_LINE,
    SAMPLES,
    TRAIN_ROWS,
    TRAINING_REPORT,
    TRAINING_REPORT_FILE,
    VAL_ROWS,
)

__all__ = ["DATASET_CARD", "DATASET_FILE", "DEMONSTRATIONS", "DEMONSTRATIONS_FILE", "HOLDOUT_FILE", "HOLDOUT_RECORD",
           "PATCH_NAME", "RUNS", "SAMPLE_LINE", "SAMPLES", "TRAINING_REPORT", "TRAINING_REPORT_FILE", "TRAIN_ROWS",
           "TRAJECTORY_FILE", "TRAJECTORY_NAME", "VAL_ROWS"]

SHIFT_DB = "shift.sqlite"
SHIFT_LOCK = "shift.lock"
EVENTS = "events.jsonl"
EVENT_LINE = FileFormat("event", 1)
SUMMARY = "summary.md"
WORKSPACES = "workspaces"
ANSWER = "answer.txt"

EVAL = "eval.json"
EVAL_FILE = FileFormat("eval", 1)
EVAL_MODELS = "models"

CHECKS = "checks.json"
RESOLVED = "resolved.json"
TASK_CACHE = FileFormat("task-cache", 2)
"""checks.json / resolved.json: a verdict per task id (version 1, before formats, was the bare mapping)."""
ELAPSED = "elapsed.json"
ELAPSED_FILE = FileFormat("elapsed", 1)

ROUNDS = "rounds.jsonl"
ROUND_LINE = FileFormat("round", 1)
BEST = "best.json"
BEST_FILE = FileFormat("best", 1)
BEST_LINK = "best"
ROUND_STEP_FILE = FileFormat("round-step", 1)
ROUND_REPORT = "report.md"


def eval_json(result: dict[str, Any]) -> str:
    return EVAL_FILE.dumps(result, indent=1) + "\n"


def read_eval(path: Path) -> dict[str, Any]:
    return EVAL_FILE.load(path)


def rounds_jsonl(rounds: list[dict[str, Any]]) -> str:
    return "".join(ROUND_LINE.dumps(r) + "\n" for r in rounds)


def read_rounds(path: Path) -> list[dict[str, Any]]:
    """The finished rounds; none when the file does not exist yet."""
    return ROUND_LINE.load_lines(path) if path.is_file() else []


def best_json(best: dict[str, Any]) -> str:
    return BEST_FILE.dumps(best) + "\n"


def read_best_file(path: Path) -> dict[str, Any]:
    """best.json without its format field; {} when there is none yet."""
    if not path.is_file():
        return {}
    return {k: v for k, v in BEST_FILE.load(path).items() if k != "format"}


def sample_line(record: dict[str, Any]) -> str:
    """One line of samples.jsonl, newline included."""
    return SAMPLE_LINE.dumps(record, ensure_ascii=False) + "\n"


def event_line(record: dict[str, Any]) -> str:
    """One line of events.jsonl, without its newline."""
    return EVENT_LINE.dumps(record, default=str)


def task_cache_json(verdicts: dict[str, bool]) -> str:
    return TASK_CACHE.dumps({"tasks": verdicts}, indent=1) + "\n"


def read_task_cache(path: Path) -> dict[str, bool]:
    """checks.json / resolved.json as {task id: verdict}; {} when there is none yet."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if TASK_CACHE.version_of(data, path) == 1 else data["tasks"]


def elapsed_json(seconds: float) -> str:
    return ELAPSED_FILE.dumps({"seconds": seconds}) + "\n"


def read_elapsed(path: Path) -> float | None:
    return ELAPSED_FILE.load(path)["seconds"] if path.is_file() else None


def round_step_json(record: dict[str, Any]) -> str:
    return ROUND_STEP_FILE.dumps(record, indent=1) + "\n"


def read_round_step(path: Path) -> dict[str, Any]:
    """A finished step's record without its format field; {} when the step has not finished."""
    if not path.is_file():
        return {}
    return {k: v for k, v in ROUND_STEP_FILE.load(path).items() if k != "format"}
