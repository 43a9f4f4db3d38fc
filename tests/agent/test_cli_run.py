"""`nightowl run` and `nightowl show` as a user runs them: a real subprocess, a real HTTP server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from tests.agent.conftest import snapshot
from tests.agent.scripts import by_turn, fix_the_bug
from tests.helpers import git, nightowl


def test_run_json_then_show(user_repo, tmp_path):
    before = snapshot(user_repo)
    with ScriptedServer(by_turn(fix_the_bug())) as server:
        proc = nightowl("run", user_repo, "--task", "fix add()", "--base-url", server.base_url, "--model",
                        server.model, "--out", tmp_path / "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"run_id", "exit_status", "patch_path", "trajectory_path", "branch", "branch_error", "left_out"}
    assert result["exit_status"] == "submitted" and result["branch"] == f"nightowl/{result['run_id']}"
    assert "+    return a + b" in Path(result["patch_path"]).read_text()
    assert "RUNNING WITHOUT A SANDBOX" not in proc.stderr
    assert snapshot(user_repo) == before
    assert git(user_repo, "branch", "--list", "nightowl/*").strip().endswith(result["run_id"])

    shown = nightowl("show", Path(result["trajectory_path"]).parent)
    assert shown.returncode == 0, shown.stderr
    assert "submitted" in shown.stdout and "str_replace_editor" in shown.stdout and "return a + b" in shown.stdout


def test_run_that_does_not_submit_exits_non_zero(user_repo, tmp_path):
    with ScriptedServer([{"content": "no idea"}] * 3) as server:
        proc = nightowl("run", user_repo, "--task", "fix add()", "--base-url", server.base_url, "--model",
                        server.model, "--out", tmp_path, "--dangerously-no-sandbox")
    assert proc.returncode == 1 and "format_error" in proc.stdout
    assert "RUNNING WITHOUT A SANDBOX" in proc.stderr


@pytest.fixture(scope="module")
def server():
    with ScriptedServer([], model="coder") as s:
        yield s


@pytest.mark.parametrize("case,expected", [
    ("not-a-repo", "is not a git repository"),
    ("missing", "does not exist"),
    ("empty-task", "the task is empty"),
    ("unreachable", "cannot reach the model server"),
    ("unknown-model", "is not served by"),
    ("missing-task-file", "task file"),
    ("bad-commit", "is not a commit"),
    ("bad-sandbox", "--sandbox must be"),
])
def test_bad_input_is_one_clear_line(case, expected, user_repo, tmp_path, server):
    repo, task, url, model = user_repo, ["--task", "fix it"], server.base_url, "coder"
    if case == "not-a-repo":
        repo = tmp_path
    elif case == "missing":
        repo = tmp_path / "nope"
    elif case == "empty-task":
        task = ["--task", "   "]
    elif case == "unreachable":
        url = "http://127.0.0.1:9/v1"
    elif case == "unknown-model":
        model = "gpt-17"
    elif case == "bad-sandbox":
        task = ["--task", "fix it", "--sandbox", "chroot"]
    elif case == "bad-commit":
        task = ["--task", "fix it", "--commit", "no-such-branch"]
    elif case == "missing-task-file":
        task = ["--task-file", str(tmp_path / "missing.md")]
    proc = nightowl("run", repo, *task, "--base-url", url, "--model", model, "--out", tmp_path / "out",
                    "--dangerously-no-sandbox")
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "SANDBOX" not in line
             and not line.startswith("  ") and "[" not in line[:1]]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_show_rejects_a_missing_run(tmp_path):
    proc = nightowl("show", tmp_path / "nothing")
    assert proc.returncode == 2 and "no trajectory" in proc.stderr and "Traceback" not in proc.stderr
