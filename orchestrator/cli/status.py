"""`nightowl status OUT`: the state of a shift, read from its store (works while the shift runs)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator.pipelines.samples import stage_counts
from orchestrator.shift.store import Store


def shift_status(out: Path, lease_s: float = 30.0) -> dict[str, Any]:
    store = Store(out, readonly=True)
    try:
        counts = store.counts()
        generation = stage_counts(store)
        now = time.time()
        running = [{"task": a.task_id, "run_id": a.run_id, "server": a.endpoint, "steps": a.steps, "tokens": a.tokens,
                    "heartbeat_age_s": round(now - a.heartbeat_at, 1),
                    "stale": now - a.heartbeat_at > lease_s} for a in store.attempts(state="running")]
    finally:
        store.close()
    data = {"out": str(out), **counts, "running": running,
            "shift_alive": bool(running) and not all(r["stale"] for r in running)}
    if generation is not None:
        data["generate"] = generation
    return data
