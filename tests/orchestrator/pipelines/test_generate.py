"""`nightowl generate` end to end: the scripted teacher over real HTTP, real git, real sandboxes, real subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from agent.scripted_server import ScriptedServer
from tests.helpers import git, nightowl
from tests.orchestrator.helpers import SANDBOX
from tests.polyglot import make_polyglot_repo
from training.synthesis.scripted_teacher import request_kind, target_of, teacher

ROOT = Path(__file__).resolve().parents[3]
FIELDS = {"id", "commit", "file", "function", "language", "category", "t1_run_dir", "t1_patch", "pr", "t2_run_dir",
          "t2_patch", "recall", "matched", "total"}


def generate_args(repo: Path, url: str, out: Path, samples: int, *extra: str) -> list[str]:
    return ["generate", str(repo), "--samples", str(samples), "--base-url", url, "--model", "scripted", "--out", str(out),
            "--sandbox", SANDBOX, "--seed", "3", "--max-steps", "6", "--json", *extra]


def read_samples(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def status(out: Path) -> dict[str, Any]:
    result = nightowl("status", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_whole_pipeline_with_a_self_check_retry(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    branches_before = git(repo, "branch", "--list")
    said_no: list[str] = []
    wrong_t2: list[str] = []

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        kind = request_kind(request)
        if kind == "check" and not said_no:  # the first self-check says no: that sample retries T1
            said_no.append(json.dumps(request["messages"]))
            return {"content": "It changed something unrelated. <output>no</output>"}
        if kind == "t2" and target_of(request) and not wrong_t2 and request_turn(request) == 0:
            wrong_t2.append(target_of(request)[0])  # one T2 makes another change: recall 0 for that sample
            return {"content": "x", "tool_calls": [{"name": "bash", "arguments": {
                "command": f"printf '// unrelated\\n' >> {target_of(request)[1]}"}}]}
        return teacher(request)

    with ScriptedServer(respond) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 4, "--workers", "2"))
        assert result.returncode == 0, result.stderr[-3000:]
        kinds = [request_kind(r) for r in server.chat_requests()]
        rows = read_samples(out)
        assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
        assert all(FIELDS <= set(r) for r in rows)
        assert kinds.count("check") == 5 and kinds.count("pr") == 4  # one extra self-check after the "no"
        retried = [r for r in rows if r["t1_try"] == 1]
        assert len(retried) == 1
        assert (out / "runs" / f"{retried[0]['id']}.t1-0.1" / "trajectory.json").is_file()
        for row in rows:
            for key in ("t1_run_dir", "t2_run_dir"):
                traj = json.loads((Path(row[key]) / "trajectory.json").read_text())
                assert traj["exit_status"] == "submitted" and traj["patch"] == row[key.replace("run_dir", "patch")]
            assert f"`{row['function']}`" in row["pr"] and "<output>" not in row["pr"]
            assert row["commit"] == git(repo, "rev-parse", "HEAD").strip()
            assert f"note: {row['function']} reviewed" in row["t1_patch"]
            if row["function"] == wrong_t2[0]:
                assert (row["recall"], row["matched"], row["total"]) == (0.0, 0, 1)
            else:
                assert (row["recall"], row["matched"], row["total"]) == (1.0, 1, 1)
        st = status(out)["generate"]
        assert st["stages"] == {"t1": 0, "check": 0, "pr": 0, "t2": 0, "done": 4, "dropped": 0}
        assert st["recall_histogram"]["1.0"] == 3 and st["recall_histogram"]["0.0"] == 1
        # T1 for the retried sample used another category than the first try
        tried = json.loads(said_no[0])[1]["content"]
        assert retried[0]["category"] not in tried

        # re-running the same command finds everything done: no model calls, nothing duplicated
        before = len(server.requests)
        again = nightowl(*generate_args(repo, server.base_url, out, 4, "--workers", "2"))
        assert again.returncode == 0, again.stderr[-2000:]
        assert len(server.requests) - before <= 2  # only the /models health probes
        assert read_samples(out) == rows
        # another seed on the same --out would mix two generations: refused before anything runs
        other = nightowl(*generate_args(repo, server.base_url, out, 4, "--seed", "4"))
        assert other.returncode == 2 and "--seed 3" in other.stderr and "Traceback" not in other.stderr
        assert read_samples(out) == rows
    assert git(repo, "branch", "--list") == branches_before  # generation never adds branches to the user's repo


def request_turn(request: dict[str, Any]) -> int:
    return sum(1 for m in request.get("messages", []) if m.get("role") == "assistant")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    cases = [
        (["--commits", "nope"], "not a commit"),
        (["--tool-choice", "sometimes"], "--tool-choice"),
        (["--student-model", "m"], "--student-base-url"),
        (["--demos", str(tmp_path / "missing.txt")], "is not a file"),
    ]
    for extra, message in cases:
        result = nightowl(*generate_args(repo, "http://127.0.0.1:9/v1", tmp_path / "out", 2, *extra))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    git(empty, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "empty")
    result = nightowl(*generate_args(empty, "http://127.0.0.1:9/v1", tmp_path / "out", 2))
    assert result.returncode == 2 and "no functions to sample" in result.stderr


def test_kill_9_during_generation_then_resume(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")

    def slow(request: dict[str, Any]) -> dict[str, Any]:
        return {**teacher(request), "sleep": 0.3}

    def running_now(out: Path) -> int:
        import sqlite3
        try:
            db = sqlite3.connect(f"file:{out / 'shift.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT COUNT(*) FROM attempts WHERE state='running'").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    with ScriptedServer(slow) as server:
        out = tmp_path / "gen"
        args = generate_args(repo, server.base_url, out, 6, "--workers", "3")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *args], cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = len((out / "samples.jsonl").read_text().splitlines()) if (out / "samples.jsonl").exists() else 0
            if done >= 1 and running_now(out) >= 1:  # some samples written, stages in flight: kill now
                break
            assert proc.poll() is None, "generation ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert any((out / "workspaces").glob(f"nightowl-{proc.pid}-w*"))  # the workers' checkouts, left behind
        killed_at = read_samples(out)
        assert 1 <= len(killed_at) < 6
        assert status(out)["states"]["running"] >= 1  # stages were in flight when it died
        with open(out / "samples.jsonl", "a") as f:  # and a torn half line, as a crash mid-write leaves
            f.write('{"id": "s000')

        result = nightowl(*args)
        assert result.returncode == 0, result.stderr[-3000:]
        rows = read_samples(out)
        assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
        assert rows[:len(killed_at)] == killed_at  # nothing already written was lost or changed
        assert all(r["recall"] == 1.0 for r in rows)
        st = status(out)
        assert st["generate"]["stages"]["done"] == 6 and st["states"]["running"] == 0
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "attempt_dead" for e in events)  # the killed attempts were found and redone
    # nothing of the killed process is left: not its workspaces, not its sandbox stages or cgroups
    assert not list((out / "workspaces").iterdir())
    assert not [p for p in Path(tempfile.gettempdir()).glob("nightowl-*") if f"-{proc.pid}-" in p.name]
    assert not list(out.glob("runs/*/workspace")) and not list(out.glob("runs/*/.nightowl-index-*"))


@pytest.mark.parametrize("failure", ["failing", "stalled"])
def test_a_failing_or_stalled_teacher_costs_only_its_own_sample(tmp_path, failure):
    repo = make_polyglot_repo(tmp_path / "repo")
    poisoned: list[str] = []

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        target = target_of(request)
        if request_kind(request) == "t1" and target and (not poisoned or target[0] == poisoned[0]):
            if not poisoned:
                poisoned.append(target[0])
            return {"status": 500, "error": "teacher crashed"} if failure == "failing" else {**teacher(request), "sleep": 3}
        return teacher(request)

    with ScriptedServer(respond) as server:
        out = tmp_path / "gen"
        started = time.monotonic()
        result = nightowl(*generate_args(repo, server.base_url, out, 4, "--workers", "2", "--model-timeout", "1",
                                         "--model-retries", "1"), timeout=600)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-3000:]
    rows = read_samples(out)
    st = status(out)["generate"]
    print(f"\n[{failure} teacher: {len(rows)} samples done, dropped {st['dropped']}, {elapsed:.1f} s]")
    assert st["stages"]["done"] == 3 and st["stages"]["dropped"] == 1
    # A server fault is not the teacher's answer: dropped as infrastructure (a re-run retries it), with its message
    assert st["dropped"] == {"infrastructure": 1}
    assert st["dropped_examples"]["infrastructure"].startswith("infrastructure: t1 ended model_error")
    assert poisoned[0] not in {r["function"] for r in rows}
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert not any(e["event"] == "server_down" for e in events)  # the pool never paused for the others


def test_started_samples_finish_first_even_when_t2_has_its_own_server(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    with ScriptedServer(teacher) as teacher_server, ScriptedServer(teacher, model="student") as student_server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, teacher_server.base_url, out, 3, "--workers", "1",
                                         "--student-base-url", student_server.base_url, "--student-model", "student"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert {request_kind(r) for r in student_server.chat_requests()} == {"t2"}
        assert "t2" not in {request_kind(r) for r in teacher_server.chat_requests()}
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    order = [e["run_id"].split(".")[0] + "." + e["run_id"].split(".")[1] for e in events if e["event"] == "attempt_start"]
    samples = sorted({o.split(".")[0] for o in order})
    assert order == [f"{s}.{stage}" for s in samples for stage in ("t1-0", "check-0", "pr", "t2")]
    for row in read_samples(out):
        assert json.loads((Path(row["t2_run_dir"]) / "trajectory.json").read_text())["model"] == "student"


def test_functions_and_recall_commands(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    listed = nightowl("functions", str(repo), "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["per_language"] == {"go": 2, "java": 2, "javascript": 3, "python": 5, "rust": 2, "typescript": 3}
    text = nightowl("functions", str(repo))
    assert "pkg/shapes.py:18-22  Square.area" in text.stdout and "17 functions" in text.stdout
    p1, p2 = tmp_path / "p1.diff", tmp_path / "p2.diff"
    p1.write_bytes(b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old \xff\n+new\n+more\n")  # not UTF-8: bytes are kept
    p2.write_bytes(b"+new\n-old \xff\n")
    scored = nightowl("recall", str(p1), str(p2), "--json")
    assert json.loads(scored.stdout) == {"recall": 2 / 3, "matched": 2, "total": 3}
    assert "recall 0.6667  matched 2 of 3" in nightowl("recall", str(p1), str(p2)).stdout
    missing = nightowl("recall", str(p1), str(tmp_path / "nope.diff"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr and "Traceback" not in missing.stderr
    bad = nightowl("functions", str(repo), "--commit", "nope")
    assert bad.returncode == 2 and "not a commit" in bad.stderr


def test_an_empty_t1_retries_and_duplicate_patches_are_dropped(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    first_t1: list[int] = []

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        if request_kind(request) in ("t1", "t2"):
            if request_kind(request) == "t1" and (not first_t1 or (len(first_t1) == 1 and request_turn(request) > 0)):
                first_t1.append(1)  # the very first T1 submits without changing anything
                return {"content": "done", "tool_calls": [{"name": "submit", "arguments": {}}]}
            if request_turn(request) == 0:  # every later rollout makes the same change, whatever it was asked
                return {"content": "x", "tool_calls": [{"name": "bash", "arguments": {
                    "command": "printf '// same\\n' >> web/app.js"}}]}
        return teacher(request)

    with ScriptedServer(respond) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 3, "--workers", "1"))
        assert result.returncode == 0, result.stderr[-3000:]
    rows = read_samples(out)
    assert len(rows) == 1 and rows[0]["t1_try"] == 1 and "+// same" in rows[0]["t1_patch"]
    st = status(out)["generate"]
    assert st["stages"]["done"] == 1 and st["dropped"] == {"duplicate": 2}


def test_several_snapshots(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "extra.py").write_text("def added_later(x):\n    y = x + 1\n    return y\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second snapshot")
    second = git(repo, "rev-parse", "HEAD").strip()
    with ScriptedServer(teacher) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 4, "--workers", "2", "--commits", "HEAD~1,HEAD"))
        assert result.returncode == 0, result.stderr[-3000:]
    rows = read_samples(out)
    assert sorted(r["commit"] for r in rows) == sorted([first, second] * 2)
    for row in rows:  # each rollout started from its sample's snapshot
        for key in ("t1_run_dir", "t2_run_dir"):
            assert json.loads((Path(row[key]) / "trajectory.json").read_text())["base_commit"] == row["commit"]


def test_a_schema_1_store_migrates_in_place(tmp_path):
    import sqlite3

    from orchestrator.shift.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION, Store

    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(MIGRATIONS[0] + "; CREATE TABLE schema_version (version INTEGER NOT NULL);"
                     "INSERT INTO schema_version VALUES (1);"
                     "INSERT INTO tasks (id, seq, task, commit_ish, source, updated_at) VALUES ('t-1', 1, 'x', 'HEAD', 'f', 0);")
    db.close()
    store = Store(tmp_path)
    try:
        assert store.db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 2
        task = store.task("t-1")
        assert (task.kind, task.role, task.priority, task.sample_id, task.state) == ("agent", "default", 0, None, "queued")
        assert store.claim_next("http://x/v1", tmp_path / "runs") is not None  # an old shift resumes as before
    finally:
        store.close()


def test_a_clone_with_a_missing_blob_still_generates(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    (repo / "assets").mkdir()
    (repo / "assets" / "big.bin").write_bytes(bytes(range(256)) * 64)
    (repo / "assets" / "missing.py").write_text("def gone(x):\n    y = x\n    return y\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "assets")
    for path in ("assets/big.bin", "assets/missing.py"):  # as in a partial or damaged clone
        sha = git(repo, "rev-parse", f"HEAD:{path}").strip()
        (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()
    listed = json.loads(nightowl("functions", str(repo), "--json").stdout)
    assert listed["skipped"]["missing_blob"] == 1 and "gone" not in {f["function"] for f in listed["functions"]}
    with ScriptedServer(teacher) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 2, "--workers", "2"))
        assert result.returncode == 0, result.stderr[-3000:]
    rows = read_samples(out)
    assert len(rows) == 2 and all(r["recall"] == 1.0 for r in rows)
    assert not any("big.bin" in r["t1_patch"] or "missing.py" in r["t1_patch"] for r in rows)
