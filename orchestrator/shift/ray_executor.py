"""`--executor ray`: each attempt runs as a Ray task; the head (the shift process) keeps the store.

Each attempt asks Ray for real resources (`RayPlacement`: CPUs and memory per agent), so the scheduler spreads
attempts over the nodes that have room instead of piling them on the head. Before the first attempt, every alive
node is asked whether it sees the repository and can write the output directory (an attempt reads the repo and
writes its trajectory there): a node that does not is named with the path, and the shift does not start.
An attempt whose node (or worker process) dies ends as an infrastructure error, so the shift retries it as a new
attempt, which Ray places on a node that is alive; Ray itself never re-runs an attempt (a re-run would meet the
dead attempt's run directory), so no task gets two results.

Workers report steps/tokens to a small control actor after every step and learn from its answer whether to
stop, so drain, deadline and watchdog work as with local threads.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agent.run import RunOutcome, RunRequest, run_task
from orchestrator.errors import UsageError
from orchestrator.shift.executors import Progress, RayPlacement
from sandbox.errors import InfrastructureError

NODE_CHECK_TIMEOUT_S = 120.0
LOST_ATTEMPT_ERRORS = (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
                       ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError, ray.exceptions.RaySystemError)


@ray.remote(num_cpus=0)
class Control:
    def __init__(self) -> None:
        self.stop: set[str] = set()
        self.progress: dict[str, tuple[int, int]] = {}

    def request_stop(self, run_id: str) -> None:
        self.stop.add(run_id)

    def report(self, run_id: str, steps: int, tokens: int) -> bool:
        self.progress[run_id] = (steps, tokens)
        return run_id in self.stop

    def get(self, run_id: str) -> tuple[int, int] | None:
        return self.progress.get(run_id)

    def forget(self, run_id: str) -> None:
        self.stop.discard(run_id)
        self.progress.pop(run_id, None)


@ray.remote(num_cpus=0, max_retries=0)
def run_attempt_remote(request_json: str, control: Any) -> tuple[str, str]:
    """(the outcome as JSON, the id of the node it ran on)"""
    request = RunRequest.model_validate_json(request_json)
    flag = {"stop": False}

    def progress(t: Any) -> None:
        flag["stop"] = ray.get(control.report.remote(request.run_id, len(t.steps), t.usage.total_tokens))

    outcome = run_task(request, should_stop=lambda: flag["stop"], progress=progress)
    return outcome.model_dump_json(), ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0, max_retries=0)
def paths_not_seen(readable: list[str], writable: list[str]) -> list[str]:
    """What this node cannot read or write, each with why."""
    problems = [f"{p} (not found)" for p in readable if not os.path.isdir(p)]
    for p in writable:
        if not os.path.isdir(p):
            problems.append(f"{p} (not found)")
        elif not os.access(p, os.W_OK):
            problems.append(f"{p} (not writable)")
    return problems


def unseen_paths(readable: list[Path], writable: list[Path],
                 timeout_s: float = NODE_CHECK_TIMEOUT_S) -> dict[str, list[str]]:
    """node ("ip (id)") -> the paths it does not see, asked of every alive node of the connected cluster."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {f"{n['NodeManagerAddress']} ({n['NodeID'][:12]})":
            paths_not_seen.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote([str(p) for p in readable], [str(p) for p in writable]) for n in nodes}
    ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    answers = dict(zip(ready, ray.get(ready)))
    problems = {}
    for node, ref in refs.items():
        if ref in pending:
            problems[node] = [f"did not answer within {timeout_s:g} s"]
        elif answers[ref]:
            problems[node] = answers[ref]
    return problems


def check_nodes_see(readable: list[Path], writable: list[Path]) -> None:
    problems = unseen_paths(readable, writable)
    if problems:
        where = "; ".join(f"node {node}: {', '.join(paths)}" for node, paths in sorted(problems.items()))
        raise UsageError(f"not every Ray node sees what an attempt needs ({where}): put the repository and --out on "
                         "storage every node mounts at the same path")


class RayExecutor:
    def __init__(self, address: str | None, workers: int, placement: RayPlacement | None = None,
                 readable: list[Path] | None = None, writable: list[Path] | None = None, poll_s: float = 0.3):
        self.placement = placement or RayPlacement()
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            cpus = max(2, workers * self.placement.cpus_per_agent)
            try:
                ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                         log_to_driver=False)
            except ConnectionError as e:
                raise UsageError(f"could not join the Ray cluster at {address} ({str(e).splitlines()[0][:200]}): "
                                 "check --ray-address; a cluster with token auth (Ray's default) needs "
                                 "RAY_AUTH_MODE=token and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None
        try:
            check_nodes_see(readable or [], writable or [])
        except BaseException:
            self.close_ray()
            raise
        # On the head's node: the control must outlive any worker node that dies.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.control = Control.options(scheduling_strategy=here).remote()
        self.poll_s = poll_s
        self.placements: dict[str, str] = {}
        """run id -> the node its attempt ran on"""

    def attempt_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.placement.cpus_per_agent}
        if self.placement.memory_mb_per_agent:
            options["memory"] = self.placement.memory_mb_per_agent * 1024 * 1024
        return options

    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome:
        run_id = request.run_id or ""
        ref = run_attempt_remote.options(**self.attempt_options()).remote(request.model_dump_json(), self.control)
        asked = False
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=self.poll_s)
                seen = ray.get(self.control.get.remote(run_id))
                if seen:
                    progress(*seen)
                if ready:
                    break
                if not asked and should_stop():
                    self.control.request_stop.remote(run_id)
                    asked = True
            try:
                outcome_json, node = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                raise e.as_instanceof_cause() from None
            except LOST_ATTEMPT_ERRORS as e:
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise InfrastructureError(f"the Ray node or worker running attempt {run_id} was lost "
                                          f"({type(e).__name__}: {first_line[:200]})") from None
            self.placements[run_id] = node
            return RunOutcome.model_validate_json(outcome_json)
        finally:
            self.control.forget.remote(run_id)

    def close(self) -> None:
        try:
            ray.kill(self.control)
        except Exception:
            pass
        self.close_ray()

    def close_ray(self) -> None:
        if self.owns_ray:
            time.sleep(0)
            ray.shutdown()
