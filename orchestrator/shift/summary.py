"""summary.md at the end of a shift: what was done, what failed, and why."""
from __future__ import annotations

import time
from pathlib import Path

from agent.trajectory import write_text_atomic
from orchestrator.layout import SUMMARY
from orchestrator.shift.store import Store


def write_summary(store: Store, out: Path, stopped: str | None) -> Path:
    counts = store.counts()
    results = {r["task_id"]: r for r in store.results()}
    lines = ["# nightowl shift summary", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}. "
             + (f"The shift stopped early ({stopped}); re-run the same command to resume." if stopped else ""), "",
             "| state | tasks |", "|---|---|"]
    lines += [f"| {state} | {n} |" for state, n in counts["states"].items()]
    lines += ["", f"Attempts: {counts['attempts']}. Tokens: {counts['tokens']}.", ""]
    if counts["exit_status"]:
        lines += ["| result | tasks |", "|---|---|"]
        lines += [f"| {status} | {n} |" for status, n in sorted(counts["exit_status"].items())]
        lines.append("")
    lines += ["| task | state | result | attempts | branch | run | why |", "|---|---|---|---|---|---|---|"]
    for task in store.tasks():
        r = results.get(task.id)
        why = (r["message"] if r and r["exit_status"] != "submitted" else task.error or "") or ""
        why = why.replace("|", "/").replace("\n", " ")[:120]
        run = Path(r["run_dir"]).relative_to(out) if r else ""
        lines.append(f"| {task.id} | {task.state} | {r['exit_status'] if r else ''} "
                     f"| {task.attempts + task.infra_retries} "
                     f"| {r['branch'] or '' if r else ''} | {run} | {why} |")
    path = out / SUMMARY
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
