"""One task, end to end: workspace -> sandbox -> agent loop -> trajectory, patch and branch.

The user's repository is only ever read, except for one new branch `nightowl/<run-id>` created from the
patch when the agent submitted. Its working tree, index, HEAD and stash are never touched.
"""
from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.loop import Agent, AgentConfig
from agent.model import Model, ModelConfig, OpenAIChatModel, served_tool_format
from agent.trajectory import PATCH_NAME, TRAJECTORY_NAME, ExitStatus, Trajectory, save_trajectory, write_bytes_atomic
from sandbox.base import Sandbox
from sandbox.errors import NightowlError, TaskError, UserError
from sandbox.git import repo_toplevel, resolve_commit
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.repo_config import load_repo_config
from sandbox.select import SandboxKind, open_sandbox, workspace_owner
from sandbox.setup_env import environment_policy, prepare_environment
from sandbox.workspace import commit_patch_to_branch, create_workspace, remove_workspace
from sandbox.workspace_pool import WorkspacePool

DEFAULT_OUT = Path.home() / ".nightowl" / "runs"


class RunRequest(BaseModel):
    repo: Path
    task: str
    commit: str = "HEAD"
    model: ModelConfig
    agent: AgentConfig = Field(default_factory=AgentConfig)
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    policy: Policy | None = None
    """What the sandbox allows; None is the safe default `Policy()`."""
    sandbox: SandboxKind = "auto"
    out_dir: Path = DEFAULT_OUT
    run_id: str | None = None
    branch: str | None = None
    """Result branch name; default `nightowl/<run-id>`."""
    create_branch: bool = True


class RunOutcome(BaseModel):
    run_id: str
    exit_status: ExitStatus
    run_dir: Path
    trajectory_path: Path
    patch_path: Path
    branch: str | None
    branch_error: str | None = None
    """Why the agent's submitted patch did not become a branch (the patch is still in patch.diff)."""
    steps: int
    left_out: list[dict[str, str]] = Field(default_factory=list)
    """Paths kept out of the patch and branch (symlinks leading outside the repository, special files)."""
    tokens: int | None = None
    exit_message: str = ""
    base_commit: str = ""
    """(tokens is None: an outcome from an older nightowl, e.g. a Ray worker; read the trajectory file instead.)"""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_task(request: RunRequest, model: Model | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             progress: Callable[[Trajectory], None] = lambda t: None,
             workspaces: WorkspacePool | None = None) -> RunOutcome:
    """`workspaces`: reuse a pooled checkout (reset to pristine) instead of creating one in the run directory."""
    if not request.task.strip():
        raise TaskError("the task is empty: give a task with --task TEXT or --task-file FILE")
    repo = repo_toplevel(request.repo.expanduser().resolve())
    run_id = request.run_id or new_run_id()
    run_dir = request.out_dir.expanduser().resolve() / run_id
    trajectory_path, patch_path = run_dir / TRAJECTORY_NAME, run_dir / PATCH_NAME
    model = model or OpenAIChatModel(request.model)
    card = model.served_model() if hasattr(model, "served_model") else {}
    agent_config = request.agent
    if agent_config.context_length is None and card.get("max_model_len"):
        agent_config = agent_config.model_copy(update={"context_length": int(card["max_model_len"])})

    base_commit = resolve_commit(repo, request.commit)
    repo_config = load_repo_config(repo, base_commit)
    if trajectory_path.exists():
        raise UserError(f"run {run_id} already exists: {trajectory_path}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # `nightowl run` may have put its server's log there already
    except OSError as e:
        raise UserError(f"cannot create the run directory {run_dir}: {e.strerror} (choose another --out)") from None
    owner = workspace_owner(request.sandbox, request.policy)
    workspace = (workspaces.acquire(repo, base_commit, owner) if workspaces is not None
                 else create_workspace(repo, base_commit, run_dir / "workspace", owner))
    trajectory = Trajectory(
        run_id=run_id, task=request.task, repo=str(repo), base_commit=workspace.base_commit,
        model=request.model.model, base_url=request.model.base_url, tools=[],
        settings={"agent": agent_config.model_dump(), "model": request.model.model_dump(),
                  "limits": request.limits.model_dump(), "sandbox": request.sandbox,
                  "repo_config": repo_config.model_dump()},
    )
    if tool_format := served_tool_format(card):
        trajectory.settings["tool_format"] = tool_format
    branch = branch_error = None
    try:
        prepared = prepare_environment(repo, base_commit, repo_config, request.sandbox)
        if prepared is not None:
            trajectory.settings["environment"] = {"log": str(prepared.log), "reused": prepared.reused,
                                                  "setup_s": round(prepared.setup_s, 3)}
        policy = environment_policy(prepared, repo_config, request.limits, base=request.policy)
        sandbox = open_sandbox(request.sandbox, workspace, request.limits, policy)
        try:
            trajectory.sandbox = measured_self_check(sandbox, request, run_id)
            agent = Agent(model, sandbox, agent_config, trajectory, should_stop=should_stop)

            def save(t: Trajectory) -> None:
                if t.exit_status != ExitStatus.running:  # the exact patch lands before the trajectory says so
                    write_bytes_atomic(patch_path, agent.patch)
                save_trajectory(t, trajectory_path)
                progress(t)
            agent.on_step = save
            save(trajectory)
            agent.run()
        finally:
            sandbox.close()
        if trajectory.exit_status == ExitStatus.submitted and request.create_branch:
            branch, branch_error = make_branch(repo, workspace.base_commit, agent.patch,
                                               request.branch or f"nightowl/{run_id}", request.task, run_id)
            if branch_error:
                trajectory.exit_message += f"; no branch: {branch_error}"
                save_trajectory(trajectory, trajectory_path)
    finally:
        if workspaces is not None:
            workspaces.release(workspace)
        else:
            remove_workspace(workspace)
    return RunOutcome(run_id=run_id, exit_status=trajectory.exit_status, run_dir=run_dir,
                      trajectory_path=trajectory_path, patch_path=patch_path, branch=branch,
                      branch_error=branch_error, steps=len(trajectory.steps), left_out=trajectory.left_out,
                      tokens=trajectory.usage.total_tokens, exit_message=trajectory.exit_message,
                      base_commit=trajectory.base_commit)


_self_checks: dict[str, dict[str, Any]] = {}
_self_checks_lock = threading.Lock()


def measured_self_check(sandbox: Sandbox, request: RunRequest, run_id: str) -> dict[str, Any]:
    """The sandbox's self-check, measured once per process for each backend, policy and limits (it is the same
    for every rollout that shares them); later trajectories name the run that measured it."""
    policy = getattr(sandbox, "policy", None) or request.policy
    key = json.dumps([sandbox.name, request.limits.model_dump(mode="json"),
                      policy.model_dump(mode="json") if policy else None], sort_keys=True, default=str)
    with _self_checks_lock:
        known = _self_checks.get(key)
    if known is not None:
        return {**known, "measured_in": known.get("measured_in", known["run_id"])}
    check = {**sandbox.self_check(), "run_id": run_id}
    with _self_checks_lock:
        _self_checks.setdefault(key, check)
    return check


def make_branch(repo: Path, base_commit: str, patch: bytes, branch: str, task: str,
                run_id: str) -> tuple[str | None, str | None]:
    """(branch, None) or (None, why not): a patch that does not apply is a result, not a crash."""
    try:
        commit_patch_to_branch(repo, base_commit, patch, branch, message=commit_message(task, run_id))
    except NightowlError as e:
        return None, str(e)
    return branch, None


def commit_message(task: str, run_id: str) -> str:
    first_line = task.strip().splitlines()[0][:72]
    return f"{first_line}\n\nnightowl run {run_id}\n"


def outcome_json(outcome: RunOutcome) -> dict[str, Any]:
    return {"run_id": outcome.run_id, "exit_status": outcome.exit_status.value,
            "patch_path": str(outcome.patch_path), "trajectory_path": str(outcome.trajectory_path),
            "branch": outcome.branch, "branch_error": outcome.branch_error, "left_out": outcome.left_out}
