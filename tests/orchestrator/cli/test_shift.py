"""The shift as a subprocess: SIGKILL at random moments, SIGINT drain, status from another shell."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from tests.helpers import git
from tests.orchestrator.helpers import (
    SANDBOX,
    agent_reply,
    fingerprint,
    make_repo,
    nightowl_branches,
    shift_inputs,
    write_tasks,
)

ROOT = Path(__file__).resolve().parents[3]


def shift_cmd(repo, tasks, url, out, workers=8, *extra):
    return [sys.executable, "-m", "orchestrator.cli.main", "shift", str(repo), "--tasks", str(tasks), "--workers",
            str(workers), "--base-url", url, "--model", "scripted", "--out", str(out), "--sandbox", SANDBOX, "--json",
            *extra]


def start(cmd):
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def status(out: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "status", str(out), "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def attempt_ends(out: Path, event: str = "attempt_end") -> int:
    path = out / "events.jsonl"
    if not path.exists():
        return 0
    return sum(f'"{event}"' in line for line in path.read_text().splitlines())


def wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def check_results(out: Path, repo: Path, n: int) -> None:
    db = sqlite3.connect(out / "shift.sqlite")
    rows = db.execute("SELECT task_id, exit_status, branch, run_dir FROM results").fetchall()
    assert len(rows) == n and len({r[0] for r in rows}) == n, "a task is lost or has two results"
    assert all(r[1] == "submitted" for r in rows), [(r, json.loads((Path(r[3]) / "trajectory.json").read_text())["exit_message"] if (Path(r[3]) / "trajectory.json").exists() else None) for r in rows if r[1] != "submitted"]
    branches = nightowl_branches(repo)
    assert sorted(branches) == sorted(r[2] for r in rows) and len(branches) == n
    for task_id, _, branch, run_dir in rows:
        assert git(repo, "show", f"{branch}:out/{task_id}.txt").strip() == task_id
        # the branch was made by the attempt that holds the result
        assert f"nightowl run {Path(run_dir).name}" in git(repo, "log", "-1", "--format=%B", branch)
    for traj in out.glob("runs/*/trajectory.json"):
        json.loads(traj.read_text())
    assert not list(out.glob("runs/*/workspace")), "a workspace was left behind"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(5)
    repo, tasks, out = shift_inputs(tmp_path, 30)
    before = fingerprint(repo)
    kills = 0
    with ScriptedServer(lambda r: agent_reply(r, sleep=0.05)) as server:
        cmd = shift_cmd(repo, tasks, server.base_url, out)
        for _ in range(4):
            proc = start(cmd)
            started_before = attempt_ends(out, "attempt_start")
            # kill some time after it got going: mid-attempt, mid-branch, mid-write
            wait_for(lambda before=started_before, proc=proc:
                     attempt_ends(out, "attempt_start") > before or proc.poll() is not None)
            time.sleep(rng.uniform(0.0, 0.8))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
        for _ in range(5):
            proc = start(cmd)
            stdout, stderr = proc.communicate(timeout=300)
            if proc.returncode == 0:
                break
        assert proc.returncode == 0, stderr
    assert kills >= 3
    events = [json.loads(x)["event"] for x in (out / "events.jsonl").read_text().splitlines()]
    assert "attempt_dead" in events or "attempt_adopted" in events  # some kill landed mid-attempt
    assert json.loads(stdout)["complete"] is True
    check_results(out, repo, 30)
    s = status(out)
    assert s["states"] == {"queued": 0, "running": 0, "done": 30, "failed": 0}
    assert s["exit_status"] == {"submitted": 30}
    assert fingerprint(repo) == before


@pytest.mark.slow
def test_sigint_drains_then_resume_and_status_while_running(tmp_path):
    repo, tasks, out = shift_inputs(tmp_path, 12)
    before = fingerprint(repo)
    delay = {"seconds": 0.4}
    with ScriptedServer(lambda r: agent_reply(r, sleep=delay["seconds"])) as server:
        proc = start(shift_cmd(repo, tasks, server.base_url, out, 3))
        wait_for(lambda: attempt_ends(out) >= 2)
        live = status(out)
        assert live["tasks"] == 12 and live["states"]["running"] >= 1 and live["shift_alive"]
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 3, stderr
        report = json.loads(stdout)
        assert report["stopped"] == "drain" and not report["complete"]
        s = status(out)
        assert s["states"]["running"] == 0 and 0 < s["states"]["done"] < 12
        # drained attempts finished normally: nothing was interrupted
        assert "interrupted" not in s["exit_status"]

        # a second signal stops the in-flight attempts at once; they are retried on resume. Replies are slow here
        # so the attempts are still in flight when the signals come (at 0.4 s the rest of the shift could finish
        # while `status` starts up on a busy machine, and then the shift rightly exits 0)
        delay["seconds"] = 20.0
        proc = start(shift_cmd(repo, tasks, server.base_url, out, 3))
        wait_for(lambda: status(out)["states"]["running"] >= 1 if (out / "shift.sqlite").exists() else False)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        # 3: the attempts saw the stop between model calls; 130: a call outlived the grace and the shift left
        assert proc.returncode in (3, 130)
        assert status(out)["states"]["done"] < 12
        delay["seconds"] = 0.4

        proc = start(shift_cmd(repo, tasks, server.base_url, out, 3))
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    check_results(out, repo, 12)
    assert fingerprint(repo) == before


def test_bad_input_is_one_line_without_traceback(tmp_path):
    repo = make_repo(tmp_path / "repo")
    cases = [
        (["--tasks", str(tmp_path / "missing.jsonl")], "does not exist"),
        (["--tasks", str(write_tasks(tmp_path / "t.jsonl", 1)), "--until", "25:99"], "--until"),
        (["--tasks", str(tmp_path / "t.jsonl"), "--sandbox", "nope"], "--sandbox"),
    ]
    for extra, expected in cases:
        cmd = [sys.executable, "-m", "orchestrator.cli.main", "shift", str(repo), "--base-url", "http://127.0.0.1:9/v1",
               "--model", "m", "--out", str(tmp_path / "out"), *extra]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert expected in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "status", str(tmp_path / "nowhere"), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no shift database" in r.stderr and "Traceback" not in r.stderr
