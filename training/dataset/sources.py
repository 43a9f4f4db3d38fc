"""Where training trajectories come from: shift directories, generate directories, plain run directories.

Only files are read (never the shift's SQLite store): a shift keeps each attempt in OUT/runs/<task-id>.<n>/, a
generation lists its samples in DIR/samples.jsonl with the T1 and T2 run directories.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sandbox.errors import UserError
from training.layout import RUNS, SAMPLE_LINE, SAMPLES, TRAJECTORY_NAME

TRAJECTORY = TRAJECTORY_NAME
SVG_FIELDS = ("commit", "file", "function", "language", "category", "matched", "total")


class SourceError(UserError, ValueError):
    """A source directory is missing or is not a shift, generate or run directory."""


@dataclass
class Candidate:
    trajectory: Path
    source: str
    """task | svg-t1 | svg-t2"""
    group: str
    """Split key: everything with the same key lands on the same side of the train/val split."""
    task_id: str | None = None
    sample_id: str | None = None
    recall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SourceKind(NamedTuple):
    name: str
    detect: Callable[[Path], bool]
    candidates: Callable[[Path], list[Candidate]]


def discover(src: Path) -> list[Candidate]:
    """The candidates of the first kind in SOURCES that `src` is."""
    src = src.expanduser()
    if not src.is_dir():
        raise SourceError(f"{src} is not a directory (give a shift directory, a generate directory or run directories)")
    for kind in SOURCES:
        if kind.detect(src):
            return kind.candidates(src)
    raise SourceError(f"{src} has no {SAMPLES}, no {RUNS}/ and no run directories with {TRAJECTORY}: "
                      "give a `nightowl shift --out` or `nightowl generate` directory")


def run_candidates(runs: Path) -> list[Candidate]:
    return [run_candidate(d) for d in sorted(runs.iterdir()) if (d / TRAJECTORY).is_file()]


def run_candidate(run_dir: Path) -> Candidate:
    """A shift names attempts <task-id>.<n>; a lone `nightowl run` directory is its own task."""
    task_id = run_dir.name.rpartition(".")[0] or run_dir.name
    return Candidate(run_dir / TRAJECTORY, "task", f"task:{task_id}", task_id=task_id)


def generate_candidates(directory: Path) -> list[Candidate]:
    found = []
    with open(directory / SAMPLES, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                sample_id = str(sample["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SourceError(f"{directory / SAMPLES}:{lineno} is not a sample (a JSON object with an id)"
                                  ) from None
            SAMPLE_LINE.version_of(sample, f"{directory / SAMPLES}:{lineno}")
            extra = {k: sample.get(k) for k in SVG_FIELDS if sample.get(k) is not None}
            for stage, recall in (("t1", None), ("t2", sample.get("recall"))):
                run_dir = sample.get(f"{stage}_run_dir")
                if not run_dir:
                    continue
                path = Path(run_dir)
                path = path if path.is_absolute() else directory / path
                found.append(Candidate(path / TRAJECTORY, f"svg-{stage}", f"svg:{sample_id}", sample_id=sample_id,
                                       recall=recall, extra=extra))
    return found


SOURCES = [
    SourceKind("generate", lambda d: (d / SAMPLES).is_file(), generate_candidates),
    SourceKind("shift", lambda d: (d / RUNS).is_dir(), lambda d: run_candidates(d / RUNS)),
    SourceKind("run", lambda d: (d / TRAJECTORY).is_file(), lambda d: [run_candidate(d)]),
    SourceKind("run directories", lambda d: bool(run_candidates(d)), run_candidates),
]
"""Where export finds trajectories, tried in order: a new kind of source is one more entry here."""
