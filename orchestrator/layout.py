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

Not versioned yet: the resume records only the command that wrote them reads (eval's checks.json, resolved.json
and models/<model>/elapsed.json, the flywheel's round-N/<step>.json).
"""
from __future__ import annotations

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

ROUNDS = "rounds.jsonl"
ROUND_LINE = FileFormat("round", 1)
BEST = "best.json"
BEST_FILE = FileFormat("best", 1)
BEST_LINK = "best"
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
