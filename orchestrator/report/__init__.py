"""`nightowl report`: one self-contained HTML page for a shift, generation, training, eval or flywheel directory.

Each directory kind is one module with `detect(dir) -> bool` and `collect(dir, options) -> Section`; a
directory gets a section for every kind it holds. A new kind is one more entry in KINDS.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from orchestrator.errors import UsageError
from orchestrator.layout import EVAL, ROUNDS, SAMPLES, SHIFT_DB, TRAINING_REPORT
from orchestrator.report import eval_kind, flywheel_kind, generate_kind, shift_kind, training_kind
from orchestrator.report.model import ReportOptions, Section
from orchestrator.report.page import render_page


class Kind(NamedTuple):
    name: str
    marker: str
    detect: Callable[[Path], bool]
    collect: Callable[[Path, ReportOptions], Section]


KINDS = [
    Kind("shift", SHIFT_DB, shift_kind.detect, shift_kind.collect),
    Kind("generate", SAMPLES, generate_kind.detect, generate_kind.collect),
    Kind("training", TRAINING_REPORT, training_kind.detect, training_kind.collect),
    Kind("eval", EVAL, eval_kind.detect, eval_kind.collect),
    Kind("flywheel", ROUNDS, flywheel_kind.detect, flywheel_kind.collect),
]


def detect_kinds(directory: Path) -> list[Kind]:
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory (give a shift, generate, training, eval or flywheel "
                         "output directory)")
    found = [k for k in KINDS if k.detect(directory)]
    if not found:
        markers = ", ".join(k.marker for k in KINDS)
        raise UsageError(f"{directory} holds no report data (none of {markers}): give a shift, generate, "
                         "training, eval or flywheel output directory")
    return found


def build_report(directory: Path, options: ReportOptions | None = None) -> str:
    options = options or ReportOptions()
    sections = [kind.collect(directory, options) for kind in detect_kinds(directory)]
    return render_page(f"nightowl report: {directory.resolve().name}", str(directory.resolve()), sections)
