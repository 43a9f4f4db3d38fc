"""What a directory kind hands to the page: a summary, plots, a table, and the trajectories behind its rows."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Column(BaseModel):
    key: str
    label: str
    type: Literal["text", "number", "status"] = "text"
    """`status` columns get a filter menu and colours; `number` columns sort numerically."""


class View(BaseModel):
    """One trajectory a row can open (a shift task has one per attempt; a generated sample has T1 and T2)."""
    label: str
    ref: str | None = None
    """Key into Section.trajectories; None when the trajectory could not be read (see `missing`)."""
    missing: str | None = None
    patch: str | None = None
    """A patch to show when no trajectory holds it."""


class Table(BaseModel):
    """A small static table drawn on the server (e.g. an eval's per-model metrics), every cell escaped."""
    title: str
    header: list[str]
    rows: list[list[str]]


class Section(BaseModel):
    kind: str
    title: str
    summary: list[tuple[str, str]] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)
    """Inline SVG documents (already escaped by orchestrator.report.svg)."""
    columns: list[Column] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    """Cell values by column key, plus `_views`: list of View dicts."""
    trajectories: dict[str, dict[str, Any]] = Field(default_factory=dict)
    texts: list[tuple[str, str]] = Field(default_factory=list)
    """Named plain-text documents shown folded (e.g. summary.md)."""
    notes: list[str] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)


class ReportOptions(BaseModel):
    usd_per_mtok: tuple[float, float] | None = None
    """Price per million prompt and completion tokens, for the cost line; None: not priced."""
