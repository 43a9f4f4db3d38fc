"""The shift records what the executor returned; the trajectory file is read again only to recover a dead
process's attempts (test_recovery.py) or for an executor that does not report the numbers."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.model import SamplingOptions
from agent.run import RunOutcome, RunRequest
from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from orchestrator.shift.executors import LocalExecutor
from tests.orchestrator.helpers import SANDBOX, agent_reply, nightowl_branches, shift_inputs


class TrajectoryHidingExecutor(LocalExecutor):
    """Runs the attempt for real, then moves its trajectory away: only the returned outcome tells the shift."""

    def __init__(self, report_numbers: bool):
        super().__init__()
        self.report_numbers = report_numbers
        self.outcomes: list[RunOutcome] = []

    def run(self, request: RunRequest, should_stop, progress) -> RunOutcome:
        outcome = super().run(request, should_stop, progress)
        outcome.trajectory_path.rename(outcome.trajectory_path.with_suffix(".hidden"))
        self.outcomes.append(outcome)
        return outcome if self.report_numbers else outcome.model_copy(update={"tokens": None})


def run_shift(tmp_path: Path, executor: TrajectoryHidingExecutor) -> Path:
    repo, tasks, out = shift_inputs(tmp_path, 2)
    with ScriptedServer(agent_reply) as server:
        Shift(ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[server.base_url], workers=2,
                           sandbox=SANDBOX, heartbeat_s=0.2, backoff_s=0.2, max_attempts=1,
                           sampling=SamplingOptions(max_retries=1, timeout_s=5)),
              sources=[file_source(tasks)], executor=executor).run()
    return out


def test_the_returned_outcome_is_recorded_without_reading_the_trajectory_again(tmp_path: Path) -> None:
    executor = TrajectoryHidingExecutor(report_numbers=True)
    out = run_shift(tmp_path, executor)
    rows = sqlite3.connect(out / "shift.sqlite").execute(
        "SELECT r.exit_status, r.steps, r.tokens, r.branch FROM results r JOIN attempts a ON a.id = r.attempt_id "
        "ORDER BY a.run_id").fetchall()
    expected = sorted(executor.outcomes, key=lambda o: o.run_id)
    assert [(status, steps, tokens) for status, steps, tokens, _ in rows] == [
        ("submitted", o.steps, o.tokens) for o in expected]
    assert all(o.tokens and o.steps and o.base_commit for o in expected)
    assert sorted(branch for *_, branch in rows) == sorted(nightowl_branches(tmp_path / "repo"))
    hidden = [json.loads(o.trajectory_path.with_suffix(".hidden").read_text()) for o in expected]
    assert [(h["usage"]["total_tokens"], h["exit_message"]) for h in hidden] == [
        (o.tokens, o.exit_message) for o in expected]


def test_an_outcome_without_the_numbers_falls_back_to_the_file(tmp_path: Path) -> None:
    out = run_shift(tmp_path, TrajectoryHidingExecutor(report_numbers=False))
    ends = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    ends = [e for e in ends if e["event"] == "attempt_end"]
    assert [e["exit_status"] for e in ends] == ["error", "error"]
    assert all(e["reason"] == "the attempt left no readable trajectory" for e in ends)
