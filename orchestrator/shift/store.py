"""The shift's durable record: one SQLite database (WAL) holding tasks, attempts and results.

It is the single source of truth. Every state change is one short transaction, so a `kill -9` at any
moment leaves a consistent database; `recover()` on the next start turns attempts whose owner died into
retryable ones. `results.task_id` is the primary key: a task can never get two results.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from orchestrator.errors import UsageError
from orchestrator.layout import SHIFT_DB
from orchestrator.shift.tasks import TaskSpec

DB_NAME = SHIFT_DB

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE shift (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY, seq INTEGER NOT NULL, task TEXT NOT NULL, commit_ish TEXT NOT NULL,
        max_steps INTEGER, source TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',          -- queued | running | done | failed
        attempts INTEGER NOT NULL DEFAULT 0,           -- attempts that count against --max-attempts
        infra_retries INTEGER NOT NULL DEFAULT 0,      -- retries caused by servers, signals, kills
        error TEXT, updated_at REAL NOT NULL);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL REFERENCES tasks(id),
        run_id TEXT NOT NULL UNIQUE, run_dir TEXT NOT NULL, endpoint TEXT,
        state TEXT NOT NULL,                           -- running | finished | dead
        exit_status TEXT, reason TEXT, steps INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
        owner_pid INTEGER NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, finished_at REAL);
    CREATE INDEX attempts_task ON attempts(task_id);
    CREATE TABLE results (
        task_id TEXT PRIMARY KEY REFERENCES tasks(id), attempt_id INTEGER NOT NULL UNIQUE REFERENCES attempts(id),
        exit_status TEXT NOT NULL, branch TEXT, run_dir TEXT NOT NULL, steps INTEGER NOT NULL,
        tokens INTEGER NOT NULL, message TEXT, recorded_at REAL NOT NULL);
    """,
    # 2: multi-stage work (`nightowl generate`): a task is one stage of a sample; samples carry the pipeline state
    """
    ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';       -- agent | chat
    ALTER TABLE tasks ADD COLUMN role TEXT NOT NULL DEFAULT 'default';     -- which endpoint pool serves it
    ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;      -- higher is claimed first
    ALTER TABLE tasks ADD COLUMN sample_id TEXT;
    CREATE INDEX tasks_queue ON tasks(state, priority, seq);
    CREATE TABLE samples (
        id TEXT PRIMARY KEY, seq INTEGER NOT NULL, commit_sha TEXT NOT NULL, file TEXT NOT NULL,
        function TEXT NOT NULL, language TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
        stage TEXT NOT NULL DEFAULT 't1',              -- t1 | check | pr | t2 | done | dropped
        t1_try INTEGER NOT NULL DEFAULT 0, tried TEXT NOT NULL DEFAULT '[]', category TEXT,
        t1_run_dir TEXT, t1_patch TEXT, t1_patch_sha TEXT, pr TEXT, t2_run_dir TEXT, t2_patch TEXT,
        recall REAL, matched INTEGER, total INTEGER, reason TEXT, updated_at REAL NOT NULL);
    CREATE INDEX samples_t1_sha ON samples(t1_patch_sha);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
DONE_STATUSES = ("submitted", "answered")
"""Exit statuses that complete a task: an agent submitted, or a chat call answered."""


class AttemptRow(BaseModel):
    id: int
    task_id: str
    run_id: str
    run_dir: str
    endpoint: str | None
    state: str
    exit_status: str | None
    reason: str | None
    steps: int
    tokens: int
    owner_pid: int
    started_at: float
    heartbeat_at: float
    finished_at: float | None


class TaskRow(BaseModel):
    id: str
    seq: int
    task: str
    commit_ish: str
    max_steps: int | None
    source: str
    state: str
    attempts: int
    infra_retries: int
    error: str | None
    kind: str = "agent"
    role: str = "default"
    priority: int = 0
    sample_id: str | None = None


class StoreError(UsageError):
    pass


class Store:
    def __init__(self, out_dir: Path, readonly: bool = False):
        self.path = Path(out_dir) / DB_NAME
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no shift database at {self.path} (is {out_dir} a shift --out directory?)")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()
        if not readonly:
            self.migrate()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def migrate(self) -> None:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer nightowl (schema {version} > {SCHEMA_VERSION})")
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    # --- shift settings -------------------------------------------------------------------------------

    def bind_shift(self, settings: dict[str, Any]) -> None:
        """Records the repo etc. on first start; a resume must name the same ones."""
        with self.tx() as db:
            for key, value in settings.items():
                row = db.execute("SELECT value FROM shift WHERE key=?", (key,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO shift VALUES (?, ?)", (key, json.dumps(value)))
                elif json.loads(row[0]) != value:
                    raise StoreError(f"this --out directory belongs to a shift with {key}={json.loads(row[0])!r}, "
                                     f"not {value!r}: use another --out")

    def shift_setting(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM shift WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # --- tasks ----------------------------------------------------------------------------------------

    def add_tasks(self, tasks: list[TaskSpec], source: str) -> int:
        """Inserts new tasks; known ids must carry the same text. Returns how many were new."""
        added = 0
        with self.tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()[0]
            for spec in tasks:
                row = db.execute("SELECT task, commit_ish FROM tasks WHERE id=?", (spec.id,)).fetchone()
                if row is not None:
                    if row["task"] != spec.task or row["commit_ish"] != spec.commit:
                        raise StoreError(f"task {spec.id!r} changed since this shift started "
                                         "(give it a new id, or use another --out)")
                    continue
                seq += 1
                added += 1
                db.execute("INSERT INTO tasks (id, seq, task, commit_ish, max_steps, source, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (spec.id, seq, spec.task, spec.commit, spec.max_steps, source, time.time()))
        return added

    def task(self, task_id: str) -> TaskRow:
        return TaskRow(**dict(self.db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()))

    def tasks(self, state: str | None = None) -> list[TaskRow]:
        query, args = "SELECT * FROM tasks", ()
        if state:
            query, args = query + " WHERE state=?", (state,)
        with self.lock:
            rows = self.db.execute(query + " ORDER BY seq", args).fetchall()
        return [TaskRow(**dict(r)) for r in rows]

    def claim_next(self, endpoint: str, out_runs: Path, skip: set[str] = frozenset(),
                   roles: tuple[str, ...] = ("default",)) -> tuple[TaskRow, AttemptRow] | None:
        """Atomically moves the first queued task (of `roles`, highest priority first) to running and opens an
        attempt."""
        marks = ",".join("?" * len(roles))
        with self.tx() as db:
            for row in db.execute(f"SELECT * FROM tasks WHERE state='queued' AND role IN ({marks}) "
                                  "ORDER BY priority DESC, seq", roles).fetchall():
                if row["id"] not in skip:
                    break
            else:
                return None
            task = TaskRow(**dict(row))
            n = db.execute("SELECT COUNT(*) FROM attempts WHERE task_id=?", (task.id,)).fetchone()[0] + 1
            run_id = f"{task.id}.{n}"
            now = time.time()
            db.execute("UPDATE tasks SET state='running', updated_at=? WHERE id=?", (now, task.id))
            cur = db.execute("INSERT INTO attempts (task_id, run_id, run_dir, endpoint, state, owner_pid, started_at, "
                             "heartbeat_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                             (task.id, run_id, str(out_runs / run_id), endpoint, os.getpid(), now, now))
            attempt = self._attempt(db, cur.lastrowid)
        return task, attempt

    def peek_queued(self, roles: tuple[str, ...]) -> tuple[int, int] | None:
        """(priority, seq) of the task `claim_next(roles=roles)` would take, or None."""
        marks = ",".join("?" * len(roles))
        with self.lock:
            row = self.db.execute(f"SELECT priority, seq FROM tasks WHERE state='queued' AND role IN ({marks}) "
                                  "ORDER BY priority DESC, seq LIMIT 1", roles).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _attempt(db: sqlite3.Connection, attempt_id: int | None) -> AttemptRow:
        return AttemptRow(**dict(db.execute("SELECT * FROM attempts WHERE id=?", (attempt_id,)).fetchone()))

    def attempt(self, attempt_id: int) -> AttemptRow:
        with self.lock:
            return self._attempt(self.db, attempt_id)

    def attempts(self, task_id: str | None = None, state: str | None = None) -> list[AttemptRow]:
        query, args = "SELECT * FROM attempts WHERE 1=1", []
        if task_id:
            query += " AND task_id=?"
            args.append(task_id)
        if state:
            query += " AND state=?"
            args.append(state)
        with self.lock:
            return [AttemptRow(**dict(r)) for r in self.db.execute(query + " ORDER BY id", args).fetchall()]

    def heartbeat(self, attempt_ids: list[int], progress: dict[int, tuple[int, int]] | None = None) -> None:
        """Renews the leases of running attempts (and their step/token counters)."""
        now = time.time()
        progress = progress or {}
        with self.tx() as db:
            for attempt_id in attempt_ids:
                steps, tokens = progress.get(attempt_id, (None, None))
                db.execute("UPDATE attempts SET heartbeat_at=?, steps=COALESCE(?, steps), tokens=COALESCE(?, tokens) "
                           "WHERE id=? AND state='running'", (now, steps, tokens, attempt_id))

    def finish_attempt(self, attempt_id: int, exit_status: str, reason: str, steps: int, tokens: int, *,
                       counts: bool, final: bool, branch: str | None = None, max_attempts: int = 1,
                       max_infra_retries: int = 1000) -> str:
        """Closes an attempt; either records the task's result or puts the task back in the queue.

        `final`: this outcome is the task's result (e.g. submitted). Otherwise the task is retried while
        attempts remain; `counts` says whether this attempt uses up one of them. Returns the task's state.
        """
        now = time.time()
        with self.tx() as db:
            attempt = self._attempt(db, attempt_id)
            task = db.execute("SELECT * FROM tasks WHERE id=?", (attempt.task_id,)).fetchone()
            db.execute("UPDATE attempts SET state='finished', exit_status=?, reason=?, steps=?, tokens=?, "
                       "finished_at=? WHERE id=?", (exit_status, reason, steps, tokens, now, attempt_id))
            if task["state"] in ("done", "failed"):
                return task["state"]
            if not counts and repeats_last_failure(db, attempt, exit_status, reason):
                counts = True  # the same infrastructure failure twice in a row is this task's, not a passing fault
            attempts = task["attempts"] + (1 if counts else 0)
            infra = task["infra_retries"] + (0 if counts else 1)
            if final or attempts >= max_attempts or infra > max_infra_retries:
                state = "done" if exit_status in DONE_STATUSES else "failed"
                db.execute("INSERT INTO results (task_id, attempt_id, exit_status, branch, run_dir, steps, tokens, "
                           "message, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (attempt.task_id, attempt_id, exit_status, branch, attempt.run_dir, steps, tokens,
                            reason, now))
            else:
                state = "queued"
            db.execute("UPDATE tasks SET state=?, attempts=?, infra_retries=?, error=?, updated_at=? WHERE id=?",
                       (state, attempts, infra, None if state == "done" else reason, now, attempt.task_id))
        return state

    def fail_task(self, task_id: str, reason: str) -> None:
        """A task that cannot run at all (e.g. its branch already exists): failed without a result row."""
        with self.tx() as db:
            db.execute("UPDATE tasks SET state='failed', error=?, updated_at=? WHERE id=? AND state NOT IN ('done')",
                       (reason, time.time(), task_id))

    def mark_dead(self, attempt_id: int, reason: str) -> None:
        with self.tx() as db:
            attempt = self._attempt(db, attempt_id)
            db.execute("UPDATE attempts SET state='dead', reason=?, finished_at=? WHERE id=? AND state='running'",
                       (reason, time.time(), attempt_id))
            db.execute("UPDATE tasks SET state='queued', infra_retries=infra_retries+1, updated_at=? "
                       "WHERE id=? AND state='running'", (time.time(), attempt.task_id))

    def stale_attempts(self, lease_s: float, owner_alive: bool = True) -> list[AttemptRow]:
        """Running attempts whose lease ran out (or all running ones when the caller knows their owner died)."""
        rows = self.attempts(state="running")
        if not owner_alive:
            return rows
        return [a for a in rows if time.time() - a.heartbeat_at > lease_s]

    def results(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.db.execute("SELECT * FROM results ORDER BY task_id").fetchall()]

    def counts(self) -> dict[str, Any]:
        with self.lock:
            by_state = dict(self.db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
            by_exit = dict(self.db.execute("SELECT exit_status, COUNT(*) FROM results GROUP BY exit_status").fetchall())
            tokens = self.db.execute("SELECT COALESCE(SUM(tokens), 0) FROM attempts").fetchone()[0]
            n_attempts = self.db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        states = {s: by_state.get(s, 0) for s in ("queued", "running", "done", "failed")}
        return {"tasks": sum(by_state.values()), "states": states, "exit_status": by_exit, "attempts": n_attempts,
                "tokens": tokens}

    def total_tokens(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COALESCE(SUM(tokens), 0) FROM attempts").fetchone()[0]


def repeats_last_failure(db: sqlite3.Connection, attempt: AttemptRow, exit_status: str, reason: str) -> bool:
    """An infrastructure error identical (run ids aside) to the one that ended the task's previous attempt."""
    if exit_status != "infrastructure_error":
        return False
    previous = db.execute("SELECT run_id, exit_status, reason FROM attempts WHERE task_id=? AND id<>? AND "
                          "state='finished' ORDER BY id DESC LIMIT 1", (attempt.task_id, attempt.id)).fetchone()
    if previous is None or previous["exit_status"] != exit_status:
        return False
    return (previous["reason"] or "").replace(previous["run_id"], "<run>") == reason.replace(attempt.run_id, "<run>")
