"""Soft verification: line-level recall of one patch's changed lines in another.

As defined for SVG: header lines (`diff`, `---`, `+++`, `@@`) are dropped; of the other lines those
starting with `+` or `-` are kept as exact strings, sign and indentation included; lines blank after
the sign are skipped; T2's lines are matched as a multiset (each used once); recall = matched / changed lines
of P1. No changed lines in P1 makes recall undefined (None).
"""
from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

HEADER_PREFIXES = ("diff", "---", "+++", "@@")


class Recall(BaseModel):
    recall: float | None
    """None when P1 changed no line (undefined)."""
    matched: int
    total: int


def changed_lines(patch: str) -> list[str]:
    lines = []
    for line in patch.splitlines():
        if line.startswith(HEADER_PREFIXES):
            continue
        if line[:1] in ("+", "-") and line[1:].strip():
            lines.append(line)
    return lines


def line_recall(p1: str, p2: str) -> Recall:
    wanted = changed_lines(p1)
    available = Counter(changed_lines(p2))
    matched = 0
    for line in wanted:
        if available[line] > 0:
            available[line] -= 1
            matched += 1
    total = len(wanted)
    return Recall(recall=matched / total if total else None, matched=matched, total=total)


def recall_histogram(recalls: list[float | None]) -> dict[str, int]:
    """Ten bins [0.0, 0.1) ... [0.9, 1.0) and a bin of its own for exactly 1.0 (the hard threshold); None is
    skipped (no reference to measure against)."""
    bins = {f"{i / 10:.1f}": 0 for i in range(10)} | {"1.0": 0}
    for r in recalls:
        if r is None:
            continue
        key = "1.0" if r >= 1.0 else f"{min(9, int(r * 10)) / 10:.1f}"
        bins[key] += 1
    return bins
