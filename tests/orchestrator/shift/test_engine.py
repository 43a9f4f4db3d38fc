import json
import sqlite3
import time
from pathlib import Path

import pytest

from agent.model import SamplingOptions
from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from tests.orchestrator.helpers import (
    SANDBOX,
    agent_reply,
    fingerprint,
    git,
    make_repo,
    nightowl_branches,
    task_of,
    write_tasks,
)


def options(repo: Path, out: Path, urls: list[str], model_retries: int = 1, model_timeout_s: float = 5,
            **kw) -> ShiftOptions:
    base = dict(repo=repo, out=out, model="scripted", base_urls=urls, workers=8, sandbox=SANDBOX,
                heartbeat_s=0.2, backoff_s=0.2, sampling=SamplingOptions(max_retries=model_retries, timeout_s=model_timeout_s))
    base.update(kw)
    return ShiftOptions(**base)


def run_shift(repo, out, tasks_file, urls, **kw):
    return Shift(options(repo, out, urls, **kw), sources=[file_source(tasks_file)]).run()


def assert_one_result_per_task(out: Path, repo: Path, n: int) -> None:
    db = sqlite3.connect(out / "shift.sqlite")
    rows = db.execute("SELECT task_id, exit_status, branch, run_dir FROM results").fetchall()
    assert len(rows) == n == len({r[0] for r in rows})
    assert all(r[1] == "submitted" for r in rows), rows
    assert sorted(r[2] for r in rows) == sorted(nightowl_branches(repo))
    for task_id, _, branch, run_dir in rows:
        traj = json.loads((Path(run_dir) / "trajectory.json").read_text())
        assert traj["exit_status"] == "submitted"
        assert f"out/{task_id}.txt" in (Path(run_dir) / "patch.diff").read_text()
        assert git(repo, "show", f"{branch}:out/{task_id}.txt").strip() == task_id
    for traj in out.glob("runs/*/trajectory.json"):
        json.loads(traj.read_text())


def test_thirty_tasks_eight_workers_one_result_each(tmp_path):
    repo = make_repo(tmp_path / "repo")
    before = fingerprint(repo)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 32)
    with ScriptedServer(agent_reply) as server:
        report = run_shift(repo, tmp_path / "out", tasks, [server.base_url])
    assert report.complete and report.counts["states"]["done"] == 32
    assert_one_result_per_task(tmp_path / "out", repo, 32)
    assert fingerprint(repo) == before
    assert (tmp_path / "out" / "summary.md").read_text().count("| submitted |") >= 1
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "attempt_end" for e in events) == 32
    # a second run of the same shift finds everything finished and does nothing
    with ScriptedServer(agent_reply) as server:
        again = run_shift(repo, tmp_path / "out", tasks, [server.base_url])
        assert again.complete and not server.chat_requests()
    assert_one_result_per_task(tmp_path / "out", repo, 32)


def test_server_errors_and_timeouts_are_retried(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 6)
    seen: dict = {}

    def flaky(request):
        # per task: its first request fails with 500, its second (after the retry) times out, then all is well
        tid = task_of(request)
        seen[tid] = seen.get(tid, 0) + 1
        if seen[tid] == 1:
            return {"status": 500}
        if seen[tid] == 2 and tid in ("t-001", "t-004"):
            return {**agent_reply(request), "sleep": 2}   # beyond the 1 s request timeout
        return agent_reply(request)

    with ScriptedServer(flaky) as server:
        report = run_shift(repo, tmp_path / "out", tasks, [server.base_url], workers=3, model_timeout_s=1,
                           model_retries=0)
    assert report.complete
    assert_one_result_per_task(tmp_path / "out", repo, 6)
    db = sqlite3.connect(tmp_path / "out" / "shift.sqlite")
    assert db.execute("SELECT COUNT(*) FROM attempts WHERE exit_status='model_error'").fetchone()[0] > 0
    assert db.execute("SELECT SUM(attempts) FROM tasks").fetchone()[0] == 6  # server faults do not count


def test_one_of_two_servers_dead(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    dead = ScriptedServer(agent_reply)
    dead_url = dead.base_url
    dead.httpd.server_close()  # bound then closed: connections are refused
    with ScriptedServer(agent_reply) as server:
        report = run_shift(repo, tmp_path / "out", tasks, [dead_url, server.base_url], workers=4)
    assert report.complete
    assert_one_result_per_task(tmp_path / "out", repo, 8)
    events = [json.loads(x) for x in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "server_down" and e["url"] == dead_url for e in events)


def test_server_dies_and_comes_back(tmp_path):
    repo = make_repo(tmp_path / "repo")
    # Enough model time (16 tasks x 2 steps x 0.3 s over 4 workers) that the outage always falls mid-shift: with
    # persistent shells and pooled workspaces, 8 tasks at 0.1 s could all finish before the server went down.
    tasks = write_tasks(tmp_path / "tasks.jsonl", 16)
    server = ScriptedServer(lambda r: agent_reply(r, sleep=0.3))
    port = server.httpd.server_address[1]
    server.start()
    import threading

    def outage():
        while not server.chat_requests():  # agents are talking to it (however long their set-up took)
            time.sleep(0.01)
        server.stop()
        time.sleep(2.0)
        back = ScriptedServer(agent_reply, port=port)
        back.start()
        holder.append(back)
    holder: list = []
    t = threading.Thread(target=outage)
    t.start()
    report = run_shift(repo, tmp_path / "out", tasks, [server.base_url], workers=4, model_retries=0)
    t.join()
    for s in holder:
        s.stop()
    assert report.complete
    assert_one_result_per_task(tmp_path / "out", repo, 16)
    events = [json.loads(x)["event"] for x in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert "server_down" in events and "server_up" in events


def test_deadline_mid_task_then_resume(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    with ScriptedServer(lambda r: agent_reply(r, sleep=0.5)) as server:
        report = run_shift(repo, tmp_path / "out", tasks, [server.base_url], workers=2, deadline=time.time() + 0.8)
        assert not report.complete and report.stopped == "deadline"
        db = sqlite3.connect(tmp_path / "out" / "shift.sqlite")
        assert db.execute("SELECT COUNT(*) FROM attempts WHERE exit_status='interrupted'").fetchone()[0] >= 1
        assert db.execute("SELECT COUNT(*) FROM tasks WHERE state='running'").fetchone()[0] == 0
        report = run_shift(repo, tmp_path / "out", tasks, [server.base_url], workers=2)
    assert report.complete
    assert_one_result_per_task(tmp_path / "out", repo, 4)


def test_watchdog_stops_a_silent_agent(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)

    def slow_then_fine(request):
        slow = len(request["messages"]) == 2 and not any(r for r in seen)
        seen.append(1)
        return agent_reply(request, sleep=2.5 if slow else 0)
    seen: list = []
    with ScriptedServer(slow_then_fine) as server:
        # the first reply takes 2.5 s, the watchdog allows 1 s: that attempt is stopped at its next step
        report = run_shift(repo, tmp_path / "out", tasks, [server.base_url], workers=1, stall_s=1.0)
    assert report.complete
    db = sqlite3.connect(tmp_path / "out" / "shift.sqlite")
    reasons = [r[0] for r in db.execute("SELECT reason FROM attempts ORDER BY id")]
    assert reasons[0].startswith("watchdog") and len(reasons) == 2


def test_bad_tasks_files_name_the_line(tmp_path):
    from orchestrator.errors import UsageError
    from orchestrator.shift.tasks import load_tasks_file
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"task": "a"}\n{"task": ""}\n')
    with pytest.raises(UsageError, match="line 2"):
        load_tasks_file(bad)
    bad.write_text('{"task": "a"}\nnot json\n')
    with pytest.raises(UsageError, match="line 2"):
        load_tasks_file(bad)
    y = tmp_path / "t.yaml"
    y.write_text("- task: a\n  id: x\n- task: b\n  id: x\n")
    with pytest.raises(UsageError, match="entry 2.*duplicate"):
        load_tasks_file(y)
    y.write_text("- task: a\n  stepz: 3\n")
    with pytest.raises(UsageError, match="entry 1"):
        load_tasks_file(y)
    y.write_text("- task: a\n  id: 'a b'\n")
    with pytest.raises(UsageError, match="entry 1.*id"):
        load_tasks_file(y)
    y.write_text("- a\n- task: b\n  max_steps: 3\n  commit: HEAD\n")
    specs = load_tasks_file(y)
    assert [s.id for s in specs] == ["task-0001", "task-0002"] and specs[1].max_steps == 3


def test_task_source_plugin_feeds_a_shift(tmp_path):
    from orchestrator.shift.tasks import TaskSource, TaskSpec

    class Synthetic:
        name = "synthetic"

        def __init__(self):
            self.left = 5

        def next_tasks(self, limit):
            n = min(limit, self.left, 2)
            self.left -= n
            return [TaskSpec(id=f"t-{100 + self.left + i:03d}", task=f"[t-{100 + self.left + i:03d}] x")
                    for i in range(n)]

    assert isinstance(Synthetic(), TaskSource)
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer(agent_reply) as server:
        report = Shift(options(repo, tmp_path / "out", [server.base_url], workers=2), sources=[Synthetic()]).run()
    assert report.complete and report.counts["states"]["done"] == 5
