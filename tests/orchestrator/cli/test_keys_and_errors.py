"""Servers that demand an API key get it (health probe included), and errors are classified instead of guessed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.model import SamplingOptions
from agent.run import RunOutcome, RunRequest
from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from sandbox.errors import UserError
from tests.orchestrator.helpers import SANDBOX, agent_reply, make_repo, nightowl_branches, write_tasks


def options(repo: Path, out: Path, urls: list[str], **kw) -> ShiftOptions:
    return ShiftOptions(**{**dict(repo=repo, out=out, model="scripted", base_urls=urls, workers=2, sandbox=SANDBOX,
                                  heartbeat_s=0.2, backoff_s=0.2, sampling=SamplingOptions(max_retries=1, timeout_s=5)), **kw})


def test_a_shift_against_a_server_that_demands_a_key_runs(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    monkeypatch.setenv("NIGHTOWL_API_KEY", "sekrit")
    with ScriptedServer(agent_reply, api_key="sekrit") as server:
        report = Shift(options(repo, tmp_path / "out", [server.base_url]), sources=[file_source(tasks)]).run()
        assert server.refused == 0
    assert report.complete and report.counts["states"]["done"] == 2
    assert len(nightowl_branches(repo)) == 2


def test_a_refused_key_is_a_one_line_setup_error(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    env = {k: v for k, v in __import__("os").environ.items() if k != "NIGHTOWL_API_KEY"}
    with ScriptedServer(agent_reply, api_key="sekrit") as server:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "shift", str(repo), "--tasks", str(tasks),
                            "--base-url", server.base_url, "--model", "scripted", "--out", str(tmp_path / "out"),
                            "--sandbox", SANDBOX, "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "answered 401" in r.stderr and "NIGHTOWL_API_KEY is not set" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("error:")]) == 1


def test_a_model_no_server_serves_is_a_setup_error_not_a_wait(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    with ScriptedServer(agent_reply) as server:
        try:
            Shift(options(repo, tmp_path / "out", [server.base_url], model="<b>nope</b>"),
                  sources=[file_source(tasks)]).run()
        except UserError as e:
            assert "'<b>nope</b>'" in str(e) and "it serves: scripted" in str(e)
        else:
            raise AssertionError("a shift for a model no server serves must stop with a set-up error")


class BuggyExecutor:
    """Stands in for the executor only to raise a bug from inside an attempt (a ValueError, on purpose)."""

    def run(self, request: RunRequest, should_stop, progress) -> RunOutcome:
        raise ValueError("an internal bug, not bad input")

    def close(self) -> None:
        pass


def test_an_internal_exception_is_not_reported_as_bad_input(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    with ScriptedServer(agent_reply) as server:
        Shift(options(repo, tmp_path / "out", [server.base_url], max_attempts=2), sources=[file_source(tasks)],
              executor=BuggyExecutor()).run()
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "attempt_end"]
    assert [e["exit_status"] for e in ends] == ["internal_error", "internal_error"]  # bounded by max_attempts
    assert all("internal error: ValueError" in e["reason"] for e in ends)
    bugs = [e for e in events if e["event"] == "internal_error"]
    assert bugs and "Traceback" in bugs[0]["traceback"] and "an internal bug" in bugs[0]["traceback"]


def test_the_cli_shows_a_bug_as_a_bug_with_its_traceback_in_a_log(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import orchestrator.cli.main as cli
    from orchestrator.errors import EXIT_BUG
    monkeypatch.setenv("NIGHTOWL_CRASH_DIR", str(tmp_path / "crash"))
    monkeypatch.setattr(cli, "run_task", lambda *a, **k: (_ for _ in ()).throw(ValueError("internal oops")))
    repo = make_repo(tmp_path / "repo")
    result = CliRunner().invoke(cli.app, ["run", str(repo), "--task", "x", "--model", "m", "--base-url",
                                          "http://127.0.0.1:9/v1"])
    assert result.exit_code == EXIT_BUG
    assert "internal error" in result.output and "ValueError: internal oops" in result.output
    assert "error: internal oops" not in result.output
    logs = list((tmp_path / "crash").glob("crash-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


def test_user_errors_stay_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "run", str(tmp_path / "nope"), "--task", "x",
                        "--model", "m", "--base-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert issubclass(__import__("sandbox.git", fromlist=["NotARepository"]).NotARepository, UserError)
