"""`nightowl generate`: soft-verified training data, as stages of samples run by the shift machinery.

A sample moves t1 -> check -> pr -> t2 -> done (or dropped). Each stage is one task in the shift store; when
a task ends, `advance` reads its result and, in one transaction, updates the sample and queues the next
stage. `advance` is idempotent and derives everything from the store, so a kill -9 between a task's end
and its sample's update is repaired by calling it again on start-up.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.trajectory import ExitStatus, Trajectory, write_text_atomic
from orchestrator.errors import UsageError
from orchestrator.layout import SAMPLE_LINE, SAMPLES, sample_line
from orchestrator.pipelines.samples import (
    SampleRow,
    add_samples,
    add_stage_task,
    sample,
    samples,
    stage_counts,
    update_sample,
)
from orchestrator.shift.engine import Shift, read_trajectory
from orchestrator.shift.store import Store
from training.synthesis.categories import pick_category
from training.synthesis.demonstrations import pick_demonstration
from training.synthesis.functions import FunctionRef
from training.synthesis.outputs import extract_output, parse_yes_no
from training.synthesis.recall import line_recall
from training.synthesis.svg_prompts import actions_of, pr_messages, self_check_messages, t1_task

SAMPLES_FILE = SAMPLES
INFRASTRUCTURE_EXITS = frozenset({"internal_error", "infrastructure_error", "sandbox_error", "server_unavailable",
                                  "setup_error", "model_error"})
"""A stage that ended so failed for reasons of the machine, a server or nightowl itself, not the model's work."""
INFRASTRUCTURE_DROP = "infrastructure"
"""The reason prefix of samples dropped for INFRASTRUCTURE_EXITS: a re-run of the same command retries them."""


class GenerateSettings(BaseModel):
    seed: int = 0
    max_t1_tries: int = Field(default=3, gt=0)
    """T1 attempts per sample, each with another category, before the sample is dropped."""
    max_steps: int | None = None


def sample_id(index: int) -> str:
    return f"s{index:05d}"


def stage_task_id(sid: str, stage: str, t1_try: int) -> str:
    return f"{sid}.{stage}-{t1_try}" if stage in ("t1", "check") else f"{sid}.{stage}"


class SamplesFile:
    """DIR/samples.jsonl: one line per finished sample, never two for one id, rebuilt from the store if torn."""
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.written: set[str] = set()

    def sync(self, store: Store) -> None:
        """Keeps the valid lines (first of each id), drops a torn tail, appends finished samples not yet there."""
        kept: list[str] = []
        self.path.touch()
        if self.path.stat().st_size:
            for line in self.path.read_bytes().decode("utf-8", "surrogateescape").split("\n"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                SAMPLE_LINE.version_of(record, self.path)
                if isinstance(record, dict) and record.get("id") and record["id"] not in self.written:
                    self.written.add(record["id"])
                    kept.append(line)
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        for row in samples(store, "done"):
            self.append(row)

    def append(self, row: SampleRow) -> None:
        with self.lock:
            if row.id in self.written:
                return
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(sample_line(row.record()))
                f.flush()
            self.written.add(row.id)


class Generation:
    """The `Stages` of SVG generation, plugged into a `Shift`."""

    def __init__(self, planned: list[FunctionRef], demonstrations: list[str], settings: GenerateSettings,
                 binding: dict[str, Any]):
        self.planned, self.binding = planned, binding
        self.demonstrations = demonstrations or ["(no example available)"]
        self.settings = settings
        self.samples_file: SamplesFile

    # --- Stages protocol --------------------------------------------------------------------------------

    def prepare(self, shift: Shift) -> None:
        store = shift.store
        self.samples_file = SamplesFile(shift.out / SAMPLES_FILE)
        store.bind_shift({"generate": self.binding})
        added = add_samples(store, [(sample_id(i), ref) for i, ref in enumerate(self.planned)])
        if added:
            shift.events.emit("samples_added", count=added)
        revived = revive_infrastructure_drops(store)
        if revived:
            shift.events.emit("samples_retried", count=revived, why="dropped for infrastructure reasons before")
        # Repair the file (a torn tail from a kill) before anything is appended to it: an append after a torn
        # line would be lost with it.
        self.samples_file.sync(store)
        for row in samples(store):
            if row.stage not in ("done", "dropped"):
                self.advance(shift, row.id)

    def task_ended(self, shift: Shift, task_id: str) -> None:
        with shift.store.lock:
            task = shift.store.task(task_id)
        if task.sample_id:
            self.advance(shift, task.sample_id)

    def snapshot(self, shift: Shift) -> dict[str, Any]:
        return stage_counts(shift.store) or {}

    # --- the pipeline -----------------------------------------------------------------------------------

    def advance(self, shift: Shift, sid: str) -> None:
        with shift.store.tx() as db:
            row = sample(db, sid)
            if row.stage in ("done", "dropped"):
                return
            task_id = stage_task_id(sid, row.stage, row.t1_try)
            task = db.execute("SELECT state FROM tasks WHERE id=?", (task_id,)).fetchone()
            if task is None:
                self.queue_stage(db, row)
                return
            if task["state"] not in ("done", "failed"):
                return
            result = db.execute("SELECT * FROM results WHERE task_id=?", (task_id,)).fetchone()
            run_dir = Path(result["run_dir"]) if result else None
            done = task["state"] == "done" and run_dir is not None
            exit_status = result["exit_status"] if result else "infrastructure_error"
            if exit_status in INFRASTRUCTURE_EXITS:  # not the teacher's doing: dropped now, retried by a re-run
                message = (result["message"] if result else "") or "no result"
                event = self.drop(db, row, f"{INFRASTRUCTURE_DROP}: {row.stage} ended {exit_status}: {message[:300]}")
            else:
                event = self.next_step(db, row, done, run_dir)
        shift.events.emit("sample_stage", sample=sid, **event)
        if event.get("stage") == "done":
            with shift.store.lock:
                finished = sample(shift.store.db, sid)
            self.samples_file.append(finished)

    def next_step(self, db: Any, row: SampleRow, done: bool, run_dir: Path | None) -> dict[str, Any]:
        """Moves the sample past its finished stage; returns what happened (for the event log)."""
        if row.stage == "t1":
            traj = read_trajectory(run_dir) if run_dir else None
            patch = traj.patch if traj and traj.exit_status == ExitStatus.submitted else ""
            if not patch.strip():
                return self.retry_t1(db, row, rollout_failure("T1", traj))
            digest = hashlib.sha256(patch.encode("utf-8", "surrogateescape")).hexdigest()
            twin = db.execute("SELECT id FROM samples WHERE t1_patch_sha=? AND id<>? AND stage<>'dropped'",
                              (digest, row.id)).fetchone()
            if twin:
                return self.drop(db, row, f"duplicate: same T1 patch as {twin[0]}")
            update_sample(db, row.id, stage="check", t1_run_dir=str(run_dir), t1_patch=patch, t1_patch_sha=digest)
            self.queue_stage(db, sample(db, row.id))
            return {"stage": "check"}
        if row.stage == "check":
            verdict = parse_yes_no(read_answer(run_dir)) if done else None
            if verdict is not True:
                why = "self-check said no" if verdict is False else ("self-check failed" if not done
                                                                     else "self-check gave no yes/no")
                return self.retry_t1(db, row, why)
            update_sample(db, row.id, stage="pr")
            self.queue_stage(db, sample(db, row.id))
            return {"stage": "pr"}
        if row.stage == "pr":
            pr = extract_output(read_answer(run_dir)) if done else ""
            if not pr:
                return self.drop(db, row, "no_pr: the PR call failed or answered nothing")
            update_sample(db, row.id, stage="t2", pr=pr)
            self.queue_stage(db, sample(db, row.id))
            return {"stage": "t2"}
        if row.stage == "t2":
            traj = read_trajectory(run_dir) if run_dir else None
            patch = traj.patch if traj and traj.exit_status == ExitStatus.submitted else ""
            if not patch.strip():
                why = rollout_failure("T2", traj)
                return self.drop(db, row, f"empty_t2: {why}" if "no change" in why else f"t2_failed: {why}")
            score = line_recall(row.t1_patch or "", patch)
            update_sample(db, row.id, stage="done", t2_run_dir=str(run_dir), t2_patch=patch, recall=score.recall,
                          matched=score.matched, total=score.total)
            return {"stage": "done", "recall": score.recall, "matched": score.matched, "total": score.total}
        raise AssertionError(f"sample {row.id} in unknown stage {row.stage!r}")

    def retry_t1(self, db: Any, row: SampleRow, why: str) -> dict[str, Any]:
        if row.t1_try + 1 >= self.settings.max_t1_tries:
            return self.drop(db, row, f"t1_exhausted: {why} ({row.t1_try + 1} tries)")
        update_sample(db, row.id, stage="t1", t1_try=row.t1_try + 1, category=None, t1_run_dir=None, t1_patch=None,
                      t1_patch_sha=None)
        self.queue_stage(db, sample(db, row.id))
        return {"stage": "t1", "retry": row.t1_try + 1, "why": why}

    @staticmethod
    def drop(db: Any, row: SampleRow, why: str) -> dict[str, Any]:
        update_sample(db, row.id, stage="dropped", reason=why)
        return {"stage": "dropped", "why": why}

    def queue_stage(self, db: Any, row: SampleRow) -> None:
        task_id = stage_task_id(row.id, row.stage, row.t1_try)
        if row.stage == "t1":
            tried = row.tried_categories()
            category = pick_category(row.id, row.t1_try, self.settings.seed, tuple(tried))
            update_sample(db, row.id, category=category, tried=json.dumps([*tried, category]))
            add_stage_task(db, task_id, row.id, "t1_retry" if row.t1_try else "t1", "agent", "teacher",
                           t1_task(row.function, row.file, category),
                           row.commit_sha, self.settings.max_steps)
        elif row.stage == "check":
            task = t1_task(row.function, row.file, row.category or "")
            add_stage_task(db, task_id, row.id, "check", "chat", "teacher",
                           json.dumps(self_check_messages(task, row.t1_patch or "")), row.commit_sha)
        elif row.stage == "pr":
            traj = read_trajectory(Path(row.t1_run_dir or ""))
            actions = actions_of(traj.model_dump()) if traj else []
            demo = pick_demonstration(self.demonstrations, row.id, self.settings.seed)
            add_stage_task(db, task_id, row.id, "pr", "chat", "teacher",
                           json.dumps(pr_messages(row.t1_patch or "", actions, demo)), row.commit_sha)
        elif row.stage == "t2":
            add_stage_task(db, task_id, row.id, "t2", "agent", "student", row.pr or "", row.commit_sha,
                           self.settings.max_steps)


def revive_infrastructure_drops(store: Store) -> int:
    """Samples a failed machine, server or bug dropped go back to the stage that failed, with a fresh task."""
    with store.tx() as db:
        rows = db.execute("SELECT id, reason FROM samples WHERE stage='dropped' AND reason LIKE ?",
                          (f"{INFRASTRUCTURE_DROP}: %",)).fetchall()
        for sid, reason in rows:
            stage = reason.split(": ", 1)[1].split(" ", 1)[0]
            row = sample(db, sid)
            update_sample(db, sid, stage=stage, reason=None)
            db.execute("UPDATE tasks SET state='queued', attempts=0, infra_retries=0, error=NULL WHERE id=?",
                       (stage_task_id(sid, stage, row.t1_try),))
            db.execute("DELETE FROM results WHERE task_id=?", (stage_task_id(sid, stage, row.t1_try),))
    return len(rows)


def rollout_failure(name: str, traj: Trajectory | None) -> str:
    if traj is None:
        return f"{name} left no trajectory"
    if traj.exit_status == ExitStatus.submitted:
        return f"{name} submitted no change"
    return f"{name} ended {traj.exit_status.value}: {traj.exit_message[:120]}"


def read_answer(run_dir: Path | None) -> str:
    if run_dir is None:
        return ""
    try:
        return (run_dir / "answer.txt").read_text(encoding="utf-8")
    except OSError:
        return ""


def check_resume(store: Store, seed: int, commits: list[str]) -> list[str] | None:
    """On a resume, the commit SHAs the first run resolved (HEAD may have moved since); errors if --seed changed."""
    bound = store.shift_setting("generate")
    if bound is None:
        return None
    if bound["seed"] != seed or bound["commits_arg"] != commits:
        raise UsageError(f"{store.path.parent} holds a generation with --seed {bound['seed']} and --commits "
                         f"{','.join(bound['commits_arg'])}: re-run with those, or use another --out")
    return list(bound["commits"])
