"""The `samples` table of the shift store (schema migration 2): one row per SVG sample and its pipeline state.

Each stage of a sample is an ordinary task row (kind agent or chat, a role that picks the endpoint pool, a
priority so that started samples finish first), so samples interleave on the shift's workers.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel

from orchestrator.shift.store import Store
from training.synthesis.functions import FunctionRef
from training.synthesis.recall import recall_histogram

STAGES = ("t1", "check", "pr", "t2", "done", "dropped")
PRIORITY = {"t1": 0, "t1_retry": 1, "check": 2, "pr": 3, "t2": 4}
"""Later stages first: a sample that has started is finished before new ones start."""
JSONL_FIELDS = ("id", "commit", "file", "function", "language", "start_line", "end_line", "category", "t1_run_dir",
                "t1_patch", "pr", "t2_run_dir", "t2_patch", "recall", "matched", "total", "t1_try")


class SampleRow(BaseModel):
    id: str
    seq: int
    commit_sha: str
    file: str
    function: str
    language: str
    start_line: int
    end_line: int
    stage: str
    t1_try: int
    tried: str
    category: str | None
    t1_run_dir: str | None
    t1_patch: str | None
    t1_patch_sha: str | None
    pr: str | None
    t2_run_dir: str | None
    t2_patch: str | None
    recall: float | None
    matched: int | None
    total: int | None
    reason: str | None
    updated_at: float

    def tried_categories(self) -> list[str]:
        return json.loads(self.tried)

    def record(self) -> dict[str, Any]:
        """The line of samples.jsonl."""
        data = self.model_dump()
        data["commit"] = data.pop("commit_sha")
        return {k: data[k] for k in JSONL_FIELDS}


def add_samples(store: Store, refs: list[tuple[str, FunctionRef]]) -> int:
    """Inserts samples not yet known (by id). Returns how many were new."""
    added = 0
    with store.tx() as db:
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM samples").fetchone()[0]
        for sample_id, ref in refs:
            if db.execute("SELECT 1 FROM samples WHERE id=?", (sample_id,)).fetchone():
                continue
            seq += 1
            added += 1
            db.execute("INSERT INTO samples (id, seq, commit_sha, file, function, language, start_line, end_line, "
                       "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (sample_id, seq, ref.commit, ref.file, ref.function, ref.language, ref.start_line,
                        ref.end_line, time.time()))
    return added


def sample(db: sqlite3.Connection, sample_id: str) -> SampleRow:
    return SampleRow(**dict(db.execute("SELECT * FROM samples WHERE id=?", (sample_id,)).fetchone()))


def samples(store: Store, stage: str | None = None) -> list[SampleRow]:
    query, args = "SELECT * FROM samples", ()
    if stage:
        query, args = query + " WHERE stage=?", (stage,)
    with store.lock:
        return [SampleRow(**dict(r)) for r in store.db.execute(query + " ORDER BY seq", args).fetchall()]


def update_sample(db: sqlite3.Connection, sample_id: str, **fields: Any) -> None:
    fields["updated_at"] = time.time()
    names = ", ".join(f"{k}=?" for k in fields)
    db.execute(f"UPDATE samples SET {names} WHERE id=?", (*fields.values(), sample_id))


def add_stage_task(db: sqlite3.Connection, task_id: str, sample_id: str, stage: str, kind: str, role: str,
                   text: str, commit: str, max_steps: int | None = None) -> None:
    if db.execute("SELECT 1 FROM tasks WHERE id=?", (task_id,)).fetchone():
        return
    seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()[0] + 1
    db.execute("INSERT INTO tasks (id, seq, task, commit_ish, max_steps, source, kind, role, priority, sample_id, "
               "updated_at) VALUES (?, ?, ?, ?, ?, 'generate', ?, ?, ?, ?, ?)",
               (task_id, seq, text, commit, max_steps, kind, role, PRIORITY[stage], sample_id, time.time()))


def stage_counts(store: Store) -> dict[str, Any] | None:
    """Counts per stage, a recall histogram and why samples were dropped; None when the store has no samples."""
    with store.lock:
        try:
            by_stage = dict(store.db.execute("SELECT stage, COUNT(*) FROM samples GROUP BY stage").fetchall())
        except sqlite3.OperationalError:  # a store from before migration 2, opened read-only
            return None
        if not by_stage:
            return None
        recalls = [r[0] for r in store.db.execute("SELECT recall FROM samples WHERE stage='done'").fetchall()]
        dropped = [r[0] or "" for r in
                   store.db.execute("SELECT reason FROM samples WHERE stage='dropped' ORDER BY seq")]
        reasons = Counter(reason.split(":")[0] for reason in dropped)
        examples: dict[str, str] = {}
        for reason in dropped:
            examples.setdefault(reason.split(":")[0], reason)
    return {"samples": sum(by_stage.values()), "stages": {s: by_stage.get(s, 0) for s in STAGES},
            "recall_histogram": recall_histogram(recalls),
            "recall_undefined": sum(1 for r in recalls if r is None),
            "recall_mean": round(sum(r for r in recalls if r is not None)
                                 / max(1, sum(1 for r in recalls if r is not None)), 4),
            "dropped": dict(reasons), "dropped_examples": examples}
