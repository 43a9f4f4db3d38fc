"""The overnight shift: N workers pulling tasks from the store, each attempt in its own workspace and sandbox.

Threads: `workers` run attempts (one at a time each); one monitor thread renews leases, re-probes failed
servers, enforces the deadline and token budget, and runs the watchdog. Every state change goes to the
store first, so killing the process at any point loses at most the in-flight steps of running attempts.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from agent.loop import AgentConfig
from agent.model import ModelCallFailed, ModelConfig, ModelUnavailable, SamplingOptions
from agent.run import RunOutcome, RunRequest
from agent.trajectory import PATCH_NAME, TRAJECTORY_NAME, ExitStatus, Trajectory, load_trajectory, write_text_atomic
from orchestrator.errors import UsageError
from orchestrator.layout import ANSWER, EVENTS, RUNS, SHIFT_LOCK, WORKSPACES
from orchestrator.shift.branches import BranchConflict, ensure_branch
from orchestrator.shift.chat import chat_once
from orchestrator.shift.endpoints import Endpoint, EndpointPool
from orchestrator.shift.events import EventLog
from orchestrator.shift.executors import Executor, RayPlacement, make_executor
from orchestrator.shift.store import AttemptRow, Store, TaskRow
from orchestrator.shift.summary import write_summary
from orchestrator.shift.tasks import StaticTaskSource, TaskSource
from sandbox.errors import InfrastructureError, TaskError, UserError
from sandbox.git import GitError, repo_toplevel
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.select import SandboxKind

"""OUT/workspaces: the workers' reusable checkouts (`--workdir` puts them elsewhere)."""
INFRA_STATUSES = {ExitStatus.model_error.value, "server_unavailable"}


class RoleEndpoints(BaseModel):
    """The servers and model that serve one role (e.g. the teacher, or the student)."""
    base_urls: list[str]
    model: str


class ShiftOptions(BaseModel):
    """Everything a shift needs; per-attempt defaults come from the agent, model and sandbox models."""
    repo: Path
    out: Path
    model: str
    base_urls: list[str]
    roles: dict[str, RoleEndpoints] = Field(default_factory=dict)
    """Extra roles beyond "default" (which is `base_urls` + `model`); a role with the same servers and model
    shares their pool (and its per-server caps)."""
    create_branches: bool = True
    """Record a submitted attempt as a `nightowl/<task>` branch in the repo."""
    request_errors_count: bool = False
    """A model error while the server still answers /models costs the attempt and leaves the server in the pool
    (generate: samples are interchangeable, so one poisoned request must not pause everyone). Default: the
    server is backed off and the task retried for free."""
    workers: int = Field(default=4, gt=0)
    per_server_cap: int | None = Field(default=None, gt=0)
    """Concurrent attempts per server; default: all workers."""
    deadline: float | None = None
    """Unix time at which in-flight attempts are stopped (resumable) and the shift ends."""
    token_budget: int | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=2, gt=0)
    workdir: Path | None = None
    """Where workers keep their reusable workspaces (default OUT/workspaces); a tmpfs (e.g. /dev/shm) is fastest."""
    stop_on_internal_error: bool = False
    """A bug in one attempt stops the shift (the CLI exits 70 with the crash log) instead of costing the attempt;
    the attempt does not count, so a re-run after the fix runs it again."""
    max_infra_retries: int = Field(default=20, ge=0)
    """Attempts ended by a server fault are re-queued this many times without counting as attempts."""
    stall_s: float = Field(default=900, gt=0)
    """Watchdog: an attempt without a new step for this long is stopped."""
    sandbox: SandboxKind = "auto"
    executor: str = "local"
    ray_address: str | None = None
    ray_placement: RayPlacement = Field(default_factory=RayPlacement)
    """What each attempt asks a Ray cluster for; memory None: the sandbox's memory limit (limits.memory_mb)."""
    agent: AgentConfig = Field(default_factory=AgentConfig)
    """Each attempt's agent limits (max_steps, max_wall_s, command timeout, ...); a task's own max_steps wins."""
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    """Every model request: timeout, retries, max_tokens, temperature, tool_choice, the API-key variable (also
    sent by the health probe) and extra_body."""
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    policy: Policy | None = None
    """Sandbox policy for every attempt; None is the safe default `Policy()`."""
    heartbeat_s: float = Field(default=1.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0)
    backoff_s: float = Field(default=2.0, gt=0)
    drain_grace_s: float = Field(default=5.0, ge=0)


class ShiftReport(BaseModel):
    complete: bool
    stopped: str | None
    counts: dict[str, Any]
    summary_path: Path
    events_path: Path


class Running:
    """What the scheduler knows about one in-flight attempt (the dashboard reads these)."""
    def __init__(self, task: TaskRow, attempt: AttemptRow, endpoint: Endpoint, pool: EndpointPool):
        self.task, self.attempt, self.endpoint, self.pool = task, attempt, endpoint, pool
        self.steps = self.tokens = 0
        self.last_progress = time.monotonic()
        self.started = time.monotonic()
        self.stop_reason: str | None = None


def parse_until(text: str, now: datetime | None = None) -> float:
    """HH:MM today, or tomorrow when that time has passed, as a Unix time."""
    now = now or datetime.now()
    try:
        hour, minute = (int(p) for p in text.split(":"))
        target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise UsageError(f"--until must be HH:MM (24-hour clock), not {text!r}") from None
    if target <= now:
        target = target.fromtimestamp(target.timestamp() + 86400)
    return target.timestamp()


class Stages(Protocol):
    """Multi-stage work on top of the shift (see orchestrator/pipelines/generate.py): it adds tasks and reacts to
    their ends."""
    def prepare(self, shift: "Shift") -> None: ...

    def task_ended(self, shift: "Shift", task_id: str) -> None: ...

    def snapshot(self, shift: "Shift") -> dict[str, Any]: ...


class PoolGroup:
    """One endpoint pool and the roles it serves."""
    def __init__(self, pool: EndpointPool, roles: tuple[str, ...]):
        self.pool, self.roles = pool, roles


class Shift:
    def __init__(self, options: ShiftOptions, sources: list[TaskSource] | None = None,
                 executor: Executor | None = None, stages: Stages | None = None):
        self.opt = options
        self.stages = stages
        self.repo = repo_toplevel(options.repo.expanduser().resolve())
        self.out = options.out.expanduser().resolve()
        self.runs_dir = self.out / RUNS
        self.sources = list(sources or [])
        self.executor_override = executor
        self.running: dict[int, Running] = {}
        self.lock = threading.Lock()
        self.draining = threading.Event()
        self.stop_all = threading.Event()
        self.stopped: str | None = None
        self.signals = 0
        self.started = time.time()
        self.finished = False
        self.fatal: Exception | None = None
        """Raised by `run` once the workers stopped: set-up every task needs (a UserError), or a bug."""
        self.events: EventLog
        self.store: Store
        self.pools: list[PoolGroup] = []

    # --- life cycle -----------------------------------------------------------------------------------

    def ray_placement(self) -> RayPlacement:
        """Memory per attempt defaults to what its sandbox lets it use, so Ray never packs more agents on a node
        than the node can hold."""
        placement = self.opt.ray_placement
        if placement.memory_mb_per_agent is None and self.opt.limits.memory_mb:
            placement = placement.model_copy(update={"memory_mb_per_agent": self.opt.limits.memory_mb})
        return placement

    def run(self, install_signals: bool = False, on_start: Callable[["Shift"], None] = lambda s: None,
            on_end: Callable[["Shift"], None] = lambda s: None) -> ShiftReport:
        """Runs the shift to completion or until stopped; `on_start`/`on_end` bracket the live part (dashboard)."""
        self.out.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.out / SHIFT_LOCK, "w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another shift is running on {self.out} (see `nightowl status {self.out}`)") from None
        self.store = Store(self.out)
        self.events = EventLog(self.out / EVENTS)
        old_handlers: dict[int, Any] = {}
        try:
            self.store.bind_shift({"repo": str(self.repo)})
            self.pull_tasks(limit=None)
            self.events.emit("shift_start", pid=os.getpid(), workers=self.opt.workers,
                             tasks=self.store.counts()["tasks"], model=self.opt.model, base_urls=self.opt.base_urls,
                             executor=self.opt.executor)
            if self.stages is not None:
                self.stages.prepare(self)
            self.recover()
            self.pools = self.make_pools()
            for group in self.pools:
                group.pool.check_all()
                if not group.pool.any_healthy():
                    self.events.emit("dispatch_paused", reason="no healthy model server", roles=list(group.roles))
            executor = self.executor_override or make_executor(
                self.opt.executor, self.opt.ray_address, self.opt.workers, self.opt.workdir or self.out / WORKSPACES,
                placement=self.ray_placement(), readable=[self.opt.repo], writable=[self.out])
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    old_handlers[sig] = signal.signal(sig, self.on_signal)
            on_start(self)
            try:
                self.loop(executor)
            finally:
                on_end(self)
                executor.close()
            if self.fatal:
                raise self.fatal
            counts = self.store.counts()
            complete = counts["states"]["queued"] == 0 and counts["states"]["running"] == 0
            summary = write_summary(self.store, self.out, self.stopped)
            self.events.emit("shift_end", complete=complete, stopped=self.stopped, **counts)
            return ShiftReport(complete=complete, stopped=self.stopped, counts=counts, summary_path=summary,
                               events_path=self.events.path)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            self.events.close()
            self.store.close()
            lock_file.close()

    def make_pools(self) -> list[PoolGroup]:
        roles = {"default": RoleEndpoints(base_urls=self.opt.base_urls, model=self.opt.model), **self.opt.roles}
        groups: dict[tuple[tuple[str, ...], str], list[str]] = {}
        for role, spec in roles.items():
            groups.setdefault((tuple(sorted(spec.base_urls)), spec.model), []).append(role)
        return [PoolGroup(EndpointPool(list(urls), model, self.opt.per_server_cap or self.opt.workers,
                                       backoff_s=self.opt.backoff_s,
                                       on_change=lambda url, ok, why: self.events.emit(
                                           "server_up" if ok else "server_down", url=url, reason=why),
                                       api_key_env=self.opt.sampling.api_key_env),
                          tuple(names)) for (urls, model), names in groups.items()]

    def loop(self, executor: Executor) -> None:
        monitor = threading.Thread(target=self.monitor, name="shift-monitor", daemon=True)
        workers = [threading.Thread(target=self.worker, args=(executor,), name=f"shift-worker-{i}", daemon=True)
                   for i in range(self.opt.workers)]
        monitor.start()
        for w in workers:
            w.start()
        for w in workers:
            while w.is_alive():
                w.join(0.2)  # short joins keep the main thread responsive to signals
        self.finished = True
        monitor.join()

    def on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            self.stop("drain", f"{name}: draining (in-flight attempts finish; a second signal stops them)")
        else:
            self.stop("interrupted", f"{name} again: stopping in-flight attempts", hard=True)
            threading.Thread(target=self.hard_exit, daemon=True).start()

    def hard_exit(self) -> None:
        """After a second signal: give attempts a moment to record `interrupted`, then leave; resume reclaims the
        rest."""
        end = time.monotonic() + self.opt.drain_grace_s
        while self.running and time.monotonic() < end:
            time.sleep(0.1)
        if self.running:
            self.events.emit("hard_exit", left_running=[r.attempt.run_id for r in list(self.running.values())])
            os._exit(130)

    def stop(self, why: str, message: str, hard: bool = False) -> None:
        if self.stopped is None or hard:
            self.stopped = why
            self.events.emit("stopping", reason=why, message=message, hard=hard)
        self.draining.set()
        if hard:
            self.stop_all.set()

    # --- tasks ----------------------------------------------------------------------------------------

    def pull_tasks(self, limit: int | None) -> None:
        for source in self.sources:
            batch = source.next_tasks(limit if limit is not None else 10**9)
            if batch:
                added = self.store.add_tasks(batch, source.name)
                if added:
                    self.events.emit("tasks_added", source=source.name, count=added)

    def recover(self) -> None:
        """Attempts still marked running belong to a dead process (we hold the shift lock): adopt or retry them."""
        for attempt in self.store.stale_attempts(self.opt.lease_s, owner_alive=False):
            traj = read_trajectory(Path(attempt.run_dir))
            shutil.rmtree(Path(attempt.run_dir) / "workspace", ignore_errors=True)
            if traj is not None and traj.exit_status == ExitStatus.submitted:
                patch_path = Path(attempt.run_dir) / PATCH_NAME
                if not patch_path.exists():  # written before the final trajectory; only older runs lack it
                    write_text_atomic(patch_path, traj.patch)
                self.events.emit("attempt_adopted", task=attempt.task_id, run_id=attempt.run_id)
                self.record_submitted(self.store.task(attempt.task_id), attempt,
                                      outcome_from(Path(attempt.run_dir), traj))
            else:
                self.store.mark_dead(attempt.id, "its process died (lease not renewed)")
                self.events.emit("attempt_dead", task=attempt.task_id, run_id=attempt.run_id)

    # --- workers --------------------------------------------------------------------------------------

    def worker(self, executor: Executor) -> None:
        while not self.draining.is_set():
            claimed = self.claim()
            if claimed is None:
                if self.idle():
                    return
                time.sleep(0.2)  # no free server, or a running attempt may still add or requeue work
                continue
            group, endpoint, (task, attempt) = claimed
            try:
                try:
                    self.run_attempt(executor, endpoint, task, attempt, group.pool)
                except Exception as e:  # a bug must cost one attempt, not hang the shift with a running task
                    self.events.emit("worker_error", run_id=attempt.run_id, error=f"{type(e).__name__}: {e}",
                                     traceback=traceback.format_exc())
                    self.finish(None, "error", f"worker error: {type(e).__name__}: {e}", counts=True, attempt=attempt)
            finally:
                group.pool.release(endpoint)

    def claim(self) -> tuple[PoolGroup, Endpoint, tuple[TaskRow, AttemptRow]] | None:
        """A free endpoint of some pool and the next queued task for that pool's roles.

        Pools are tried in the order of their best queued task, so priorities hold across pools too.
        """
        def best(group: PoolGroup) -> tuple[int, int]:
            head = self.store.peek_queued(group.roles)
            return (-head[0], head[1]) if head else (1, 0)

        for group in sorted(self.pools, key=best) if len(self.pools) > 1 else self.pools:
            endpoint = group.pool.try_acquire()
            if endpoint is None:
                continue
            claim = self.store.claim_next(endpoint.url, self.runs_dir, roles=group.roles)
            if claim is None:
                self.pull_tasks(limit=self.opt.workers)
                claim = self.store.claim_next(endpoint.url, self.runs_dir, roles=group.roles)
            if claim is not None:
                return group, endpoint, claim
            group.pool.release(endpoint)
        return None

    def idle(self) -> bool:
        """Nothing queued, nothing running here or in the store: the work is done."""
        with self.lock:
            if self.running:
                return False
        states = self.store.counts()["states"]
        return states["queued"] == 0 and states["running"] == 0

    def run_attempt(self, executor: Executor, endpoint: Endpoint, task: TaskRow, attempt: AttemptRow,
                    pool: EndpointPool) -> None:
        state = Running(task, attempt, endpoint, pool)
        with self.lock:
            self.running[attempt.id] = state
        self.events.emit("attempt_start", task=task.id, run_id=attempt.run_id, server=endpoint.url)

        def progress(steps: int, tokens: int) -> None:
            state.steps, state.tokens, state.last_progress = steps, tokens, time.monotonic()

        def should_stop() -> bool:
            if self.stop_all.is_set() and state.stop_reason is None:
                state.stop_reason = self.stopped or "stopped"
            return state.stop_reason is not None

        if task.kind == "chat":
            try:
                self.run_chat(state)
            finally:
                with self.lock:
                    self.running.pop(attempt.id, None)
            return
        request = RunRequest(
            repo=self.repo, task=task.task, commit=task.commit_ish, out_dir=self.runs_dir, run_id=attempt.run_id,
            sandbox=self.opt.sandbox, create_branch=False, limits=self.opt.limits, policy=self.opt.policy,
            model=self.model_config(endpoint, pool),
            agent=self.opt.agent.model_copy(update={"max_steps": task.max_steps or self.opt.agent.max_steps}))
        try:
            try:
                outcome = executor.run(request, should_stop, progress)
            except ModelUnavailable as e:
                pool.mark_failed(endpoint, str(e))
                self.finish(state, "server_unavailable", str(e), counts=False)
                return
            except TaskError as e:  # this task cannot run as given (e.g. an unknown commit): counts
                self.finish(state, "error", str(e), counts=True)
                return
            except UserError as e:  # set-up every task needs (bubblewrap, the API key): stop the shift
                self.fatal = e
                self.finish(state, "setup_error", str(e), counts=False)
                self.stop("fatal", str(e), hard=True)
                return
            except InfrastructureError as e:  # the machine, a server or a sandbox: retried, bounded
                self.finish(state, "infrastructure_error", f"{type(e).__name__}: {e}", counts=False)
                return
            except Exception as e:  # a bug: the traceback goes to the event log, the attempt counts
                self.events.emit("internal_error", run_id=attempt.run_id, traceback=traceback.format_exc())
                if self.opt.stop_on_internal_error:
                    self.fatal = e
                    self.finish(state, ExitStatus.internal_error.value, f"internal error: {type(e).__name__}: {e}",
                                counts=False)
                    self.stop("fatal", f"internal error in {attempt.run_id}: {type(e).__name__}: {e}", hard=True)
                    return
                self.finish(state, ExitStatus.internal_error.value, f"internal error: {type(e).__name__}: {e} "
                            "(traceback in events.jsonl)", counts=True)
                return
            if outcome is None or outcome.tokens is None:  # an executor that does not report it: the file does
                traj = read_trajectory(Path(attempt.run_dir))
                if traj is None:
                    self.finish(state, "error", "the attempt left no readable trajectory", counts=True)
                    return
                outcome = outcome_from(Path(attempt.run_dir), traj)
            state.steps, state.tokens = outcome.steps, outcome.tokens or 0
            status = outcome.exit_status
            if status == ExitStatus.submitted:
                self.record_submitted(task, attempt, outcome, state)
            elif status == ExitStatus.model_error:
                if self.opt.request_errors_count and pool.probe(endpoint) is None:
                    # The server is up and answers others: this request fails, so it costs the attempt.
                    self.finish(state, status.value, outcome.exit_message, counts=True)
                    return
                # Whether the server died or kept failing, it is not the task's fault: back off and retry.
                pool.mark_failed(endpoint, outcome.exit_message[:200])
                self.finish(state, status.value, outcome.exit_message, counts=False)
            elif status == ExitStatus.interrupted:
                watchdog = (state.stop_reason or "").startswith("watchdog")
                self.finish(state, status.value, state.stop_reason or outcome.exit_message, counts=watchdog)
            else:
                self.finish(state, status.value, outcome.exit_message, counts=True)
        finally:
            with self.lock:
                self.running.pop(attempt.id, None)

    def model_config(self, endpoint: Endpoint, pool: EndpointPool) -> ModelConfig:
        return ModelConfig(base_url=endpoint.url, model=pool.model, **self.opt.sampling.model_dump())

    def run_chat(self, state: Running) -> None:
        """A plain chat call (no tools): the task text holds the messages; the answer goes to answer.txt."""
        run_dir = Path(state.attempt.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config = self.model_config(state.endpoint, state.pool)
        try:
            answer, tokens = chat_once(config, json.loads(state.task.task))
        except (ModelUnavailable, ModelCallFailed) as e:
            if self.opt.request_errors_count and state.pool.probe(state.endpoint) is None:
                self.finish(state, ExitStatus.model_error.value, str(e), counts=True)
                return
            state.pool.mark_failed(state.endpoint, str(e)[:200])
            self.finish(state, "server_unavailable", str(e), counts=False)
            return
        state.tokens = tokens
        write_text_atomic(run_dir / ANSWER, answer)
        self.finish(state, "answered", f"{len(answer)} characters", counts=True, final=True)

    def finish(self, state: Running | None, exit_status: str, reason: str, counts: bool,
               attempt: AttemptRow | None = None, final: bool = False, branch: str | None = None, steps: int = 0,
               tokens: int = 0) -> None:
        attempt = attempt or state.attempt  # type: ignore[union-attr]
        if state is not None:
            steps, tokens = state.steps, state.tokens
        task_state = self.store.finish_attempt(
            attempt.id, exit_status, reason, steps, tokens, counts=counts, final=final, branch=branch,
            max_attempts=self.opt.max_attempts, max_infra_retries=self.opt.max_infra_retries)
        self.events.emit("attempt_end", task=attempt.task_id, run_id=attempt.run_id, exit_status=exit_status,
                         reason=reason[:300], steps=steps, tokens=tokens, task_state=task_state, branch=branch)
        if self.stages is not None and task_state in ("done", "failed"):
            self.stages.task_ended(self, attempt.task_id)

    def record_submitted(self, task: TaskRow, attempt: AttemptRow, outcome: RunOutcome,
                         state: Running | None = None) -> None:
        tokens = outcome.tokens or 0
        if not self.opt.create_branches:
            self.finish(state, ExitStatus.submitted.value, outcome.exit_message, counts=True, attempt=attempt,
                        final=True, steps=outcome.steps, tokens=tokens)
            return
        try:
            patch = (Path(attempt.run_dir) / PATCH_NAME).read_bytes()
            branch: str | None = ensure_branch(self.repo, task.id, task.task, attempt.run_id, outcome.base_commit,
                                               patch)
            reason = outcome.exit_message
        except (BranchConflict, GitError, OSError) as e:
            branch, reason = None, f"no branch: {e}"
        self.finish(state, ExitStatus.submitted.value, reason, counts=True, attempt=attempt, final=True, branch=branch,
                    steps=outcome.steps, tokens=tokens)

    # --- monitor --------------------------------------------------------------------------------------

    def monitor(self) -> None:
        while not self.finished:
            time.sleep(self.opt.heartbeat_s)
            with self.lock:
                running = list(self.running.values())
            self.store.heartbeat([r.attempt.id for r in running],
                                 {r.attempt.id: (r.steps, r.tokens) for r in running})
            for group in self.pools:
                group.pool.recheck_due()
            now = time.monotonic()
            for r in running:
                if r.stop_reason is None and now - r.last_progress > self.opt.stall_s:
                    r.stop_reason = f"watchdog: no step for {self.opt.stall_s:g} s"
                    self.events.emit("watchdog", task=r.task.id, run_id=r.attempt.run_id)
            if self.opt.deadline and time.time() >= self.opt.deadline and not self.stop_all.is_set():
                self.stop("deadline", "deadline reached: stopping in-flight attempts (resumable)", hard=True)
            if (self.opt.token_budget and not self.stop_all.is_set()
                    and self.store.total_tokens() >= self.opt.token_budget):
                self.stop("token_budget", f"token budget of {self.opt.token_budget} reached", hard=True)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            running = [{"task": r.task.id, "run_id": r.attempt.run_id, "server": r.endpoint.url, "steps": r.steps,
                        "tokens": r.tokens, "elapsed_s": time.monotonic() - r.started,
                        "idle_s": time.monotonic() - r.last_progress} for r in self.running.values()]
        snap = {"counts": self.store.counts(), "running": running,
                "servers": [s for g in self.pools for s in g.pool.snapshot()],
                "elapsed_s": time.time() - self.started, "deadline": self.opt.deadline, "stopped": self.stopped}
        if self.stages is not None:
            snap["stages"] = self.stages.snapshot(self)
        return snap


def read_trajectory(run_dir: Path) -> Trajectory | None:
    try:
        return load_trajectory(run_dir / TRAJECTORY_NAME)
    except (OSError, ValueError):
        return None


def outcome_from(run_dir: Path, traj: Trajectory) -> RunOutcome:
    """What the executor returns, rebuilt from the trajectory file (recovering a dead process's attempts)."""
    return RunOutcome(run_id=traj.run_id, exit_status=traj.exit_status, run_dir=run_dir,
                      trajectory_path=run_dir / TRAJECTORY_NAME, patch_path=run_dir / PATCH_NAME, branch=None,
                      steps=len(traj.steps), left_out=traj.left_out, tokens=traj.usage.total_tokens,
                      exit_message=traj.exit_message, base_commit=traj.base_commit)


def file_source(path: Path) -> StaticTaskSource:
    from orchestrator.shift.tasks import load_tasks_file
    return StaticTaskSource(load_tasks_file(path), name=str(path))
