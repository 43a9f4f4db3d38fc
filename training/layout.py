"""The names and format versions of the files training/ writes and reads.

orchestrator/layout.py lists every file nightowl writes and describes the format convention; training/ may not
import orchestrator/, so the files training/ touches are named here and re-exported there.
"""
from __future__ import annotations

import json
from pathlib import Path

from agent.file_format import FileFormat
from agent.trajectory import TRAJECTORY_FILE, TRAJECTORY_NAME

__all__ = ["TRAJECTORY_FILE", "TRAJECTORY_NAME"]

RUNS = "runs"
"""A shift's run directories: OUT/runs/<task-id>.<n>/trajectory.json."""
SAMPLES = "samples.jsonl"
"""`nightowl generate`: one finished sample per line (written by orchestrator/pipelines, read by export)."""
SAMPLE_LINE = FileFormat("sample", 1)
DEMONSTRATIONS = "demonstrations.json"
"""Written by `generate` beside samples.jsonl: where its demonstrations came from and the cut-off it honoured."""
DEMONSTRATIONS_FILE = FileFormat("demonstrations", 1)
HOLDOUT_RECORD = "nightowl-holdout.json"
"""In the repository's git directory: the benchmark's cut-off (training/evaluation/holdout.py)."""
HOLDOUT_FILE = FileFormat("holdout", 1)

DATASET_CARD = "dataset.json"
"""`nightowl export`: what the dataset holds and how it was made. Its format covers train.jsonl and val.jsonl
beside it, whose rows stay plain `{"messages", "tools", "metadata"}` objects for other trainers."""
DATASET_FILE = FileFormat("dataset", 1)
TRAIN_ROWS = "train.jsonl"
VAL_ROWS = "val.jsonl"
TRAINING_REPORT = "training_report.json"
"""`nightowl train`: loss curves and whatever else the trainer recorded."""
TRAINING_REPORT_FILE = FileFormat("training_report", 1)


def check_dataset_format(directory: Path) -> None:
    """Refuses a dataset exported by a newer nightowl (dataset.json speaks for its rows); an older dataset, or one
    whose card is missing or torn, passes."""
    card = directory / DATASET_CARD
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    DATASET_FILE.version_of(data, card)
