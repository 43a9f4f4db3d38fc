"""`--executor ray`: each attempt runs as a Ray task; the head (the shift process) keeps the store.

Workers report steps/tokens to a small control actor after every step and learn from its answer whether to
stop, so drain, deadline and watchdog work as with local threads. On a multi-node cluster, --out and the
repository must be on storage every node sees (the attempt writes its trajectory and reads the repo there).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from agent.run import RunOutcome, RunRequest, run_task
from orchestrator.shift.executors import Progress


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
def run_attempt_remote(request_json: str, control: Any) -> str:
    request = RunRequest.model_validate_json(request_json)
    flag = {"stop": False}

    def progress(t: Any) -> None:
        flag["stop"] = ray.get(control.report.remote(request.run_id, len(t.steps), t.usage.total_tokens))

    return run_task(request, should_stop=lambda: flag["stop"], progress=progress).model_dump_json()


class RayExecutor:
    def __init__(self, address: str | None, workers: int, poll_s: float = 0.3):
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=address, num_cpus=None if address else max(2, workers), include_dashboard=False,
                     log_to_driver=False)
        self.control = Control.remote()
        self.poll_s = poll_s

    def run(self, request: RunRequest, should_stop: Callable[[], bool], progress: Progress) -> RunOutcome:
        run_id = request.run_id or ""
        ref = run_attempt_remote.remote(request.model_dump_json(), self.control)
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
                return RunOutcome.model_validate_json(ray.get(ref))
            except ray.exceptions.RayTaskError as e:
                raise e.as_instanceof_cause() from None
        finally:
            self.control.forget.remote(run_id)

    def close(self) -> None:
        try:
            ray.kill(self.control)
        except Exception:
            pass
        if self.owns_ray:
            time.sleep(0)
            ray.shutdown()
