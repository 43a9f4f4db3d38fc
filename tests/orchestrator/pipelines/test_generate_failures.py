"""`nightowl generate` never fails silently: a bug stops it (exit 70, crash log), an empty result exits non-zero
with the reasons, a re-run after the fix retries what the bug dropped, and repositories whose attributes git
cannot honour still yield samples. Real subprocesses, real HTTP, real git, real sandboxes."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agent.scripted_server import ScriptedServer
from orchestrator.shift.store import Store
from orchestrator.shift.tasks import TaskSpec
from tests.helpers import git, nightowl
from tests.orchestrator.pipelines.test_generate import ROOT, generate_args, read_samples
from tests.polyglot import make_polyglot_repo
from training.synthesis.scripted_teacher import request_kind, teacher

# Imported by the generate subprocess (PYTHONPATH): while the marker file exists, computing a rollout's patch
# raises, as a bug in nightowl would. Removing the marker is "the fix".
BUG = '''
import os
import agent.loop
_real_run = agent.loop.Agent.run
def run(self):
    if os.path.exists(os.environ["NIGHTOWL_TEST_BUG"]):
        raise TypeError("injected bug in the agent loop")
    return _real_run(self)
agent.loop.Agent.run = run
'''


def checkout_digest(repo: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts):
        h.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_a_bug_in_a_rollout_stops_generate_and_a_rerun_after_the_fix_completes(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BUG)
    marker = tmp_path / "bug-present"
    marker.touch()
    env = {"NIGHTOWL_TEST_BUG": str(marker), "NIGHTOWL_CRASH_DIR": str(tmp_path / "crashes"),
           "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}
    out = tmp_path / "gen"
    with ScriptedServer(teacher) as server:
        broken = nightowl(*generate_args(repo, server.base_url, out, 3, "--workers", "1"), env=env, timeout=600)
        assert broken.returncode == 70, broken.stderr[-2000:]
        said = " ".join(broken.stderr.split())
        assert said.count("internal error") == 1 and "injected bug in the agent loop" in said
        assert "Traceback" not in broken.stderr
        crash_logs = list((tmp_path / "crashes").glob("crash-*.log"))
        assert len(crash_logs) == 1 and str(crash_logs[0]) in broken.stderr.replace("\n", "")
        assert "_real_run" not in crash_logs[0].read_text() and "raise TypeError" in crash_logs[0].read_text()
        assert not (out / "samples.jsonl").exists() or read_samples(out) == []

        marker.unlink()  # the fix
        fixed = nightowl(*generate_args(repo, server.base_url, out, 3, "--workers", "1"), env=env, timeout=600)
        assert fixed.returncode == 0, fixed.stderr[-2000:]
    result = json.loads(fixed.stdout)
    assert result["stages"]["done"] == 3 and result["dropped"] == {}
    assert len(read_samples(out)) == 3


def test_a_teacher_that_never_submits_exits_nonzero_with_the_reasons(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")

    def never_submits(request: dict[str, Any]) -> dict[str, Any]:
        if request_kind(request) in ("t1", "t2"):
            return {"content": "", "tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]}
        return teacher(request)

    with ScriptedServer(never_submits) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 2, "--workers", "2", "--max-steps", "2"),
                          timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["stages"]["done"] == 0 and summary["dropped"] == {"t1_exhausted": 2}
    assert "max_steps" in summary["dropped_examples"]["t1_exhausted"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "0 samples" in errors[0] and "t1_exhausted (2" in errors[0]


def test_generate_on_a_repository_with_attributes_git_cannot_honour(tmp_path):
    """Sphinx's case: a working-tree-encoding iconv does not know; plus a latin-1 file and CRLF text."""
    repo = make_polyglot_repo(tmp_path / "repo")
    (repo / "notes_latin1.py").write_bytes("# caf\u00e9\ndef greet(name):\n    return 'h\u00e9' + name\n".encode("latin-1"))
    git(repo, "-c", "core.autocrlf=false", "add", "notes_latin1.py")  # before the attributes exist: bytes as written
    git(repo, "commit", "-qm", "latin-1 file")
    (repo / ".gitattributes").write_bytes(b"* working-tree-encoding=no-such-encoding\n*.txt text eol=crlf\n")
    blob = git(repo, "hash-object", "-w", "--no-filters", ".gitattributes").strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},.gitattributes")
    git(repo, "commit", "-qm", "attributes", "--no-verify")
    before = checkout_digest(repo)
    with ScriptedServer(teacher) as server:
        out = tmp_path / "gen"
        result = nightowl(*generate_args(repo, server.base_url, out, 3, "--workers", "2"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_samples(out)
    assert len(rows) == 3 and all(r["recall"] == 1.0 for r in rows)
    assert checkout_digest(repo) == before


def test_the_same_infrastructure_error_twice_is_the_tasks_error(tmp_path):
    store = Store(tmp_path)
    try:
        store.add_tasks([TaskSpec(id="t", task="x")], source="test")
        runs = tmp_path / "runs"
        for n in (1, 2):
            _, attempt = store.claim_next("http://server", runs)
            state = store.finish_attempt(attempt.id, "infrastructure_error",
                                         f"GitError: git add -A failed in {runs}/{attempt.run_id}/workspace: fatal: "
                                         "failed to encode 'a.inc'", 0, 0, counts=False, final=False, max_attempts=1)
            assert state == ("queued" if n == 1 else "failed")
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "shift.sqlite")
    assert db.execute("SELECT attempts, infra_retries FROM tasks WHERE id='t'").fetchone() == (1, 1)


def test_different_infrastructure_errors_are_retried(tmp_path):
    store = Store(tmp_path)
    try:
        store.add_tasks([TaskSpec(id="t", task="x")], source="test")
        for reason in ("server dropped the connection", "disk full"):
            task, attempt = store.claim_next("http://server", tmp_path / "runs")
            assert store.finish_attempt(attempt.id, "infrastructure_error", reason, 0, 0, counts=False, final=False,
                                        max_attempts=1) == "queued"
    finally:
        store.close()


def test_generate_summary_says_what_sampling_skipped_and_why(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    with ScriptedServer(teacher) as server:
        result = nightowl(*generate_args(repo, server.base_url, tmp_path / "gen", 1, "--workers", "1"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    sampling = json.loads(result.stdout)["sampling"]
    assert sampling["functions"] and sampling["skip_rules"]
    assert any("test" in reasons for reasons in sampling["skipped_files"].values())  # the fixture's test files
    assert "files not sampled:" in " ".join(result.stderr.split())
