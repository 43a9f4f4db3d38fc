"""What a new user meets in the first hour: fast input errors, honest notes, readable progress and help."""
from __future__ import annotations

import time

import pytest

from agent.scripted_server import ScriptedServer, ScriptError
from tests.helpers import git, nightowl


@pytest.mark.parametrize("case,expected", [("missing", "does not exist"), ("plain-dir", "is not a git repository")])
def test_a_bad_repository_is_reported_before_any_server_starts(tmp_path, case, expected):
    path = tmp_path / case
    if case == "plain-dir":
        path.mkdir()
    started = time.monotonic()
    proc = nightowl("run", path, "--task", "x", "--model", "some/model-that-would-take-a-minute", timeout=120)
    assert proc.returncode == 2 and expected in proc.stderr
    assert "starting a vLLM server" not in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_an_unknown_commit_is_named_in_a_repository_with_commits(user_repo, tmp_path):
    proc = nightowl("run", user_repo, "--task", "x", "--model", "m", "--commit", "deadbeef", timeout=120)
    assert proc.returncode == 2
    assert "'deadbeef' is not a commit" in proc.stderr and "any commits" not in proc.stderr
    assert "starting a vLLM server" not in proc.stderr


def test_a_repository_without_commits_says_so(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    proc = nightowl("run", repo, "--task", "x", "--model", "m", timeout=120)
    assert proc.returncode == 2 and "has no commits yet" in proc.stderr


def test_uncommitted_changes_are_said_to_be_left_out_and_each_step_prints_once(user_repo, tmp_path):
    # user_repo has an edited calc.py and an untracked notes.txt; replies cut off at max_tokens end the run.
    cut = {"content": "I will now", "finish_reason": "length"}
    with ScriptedServer([cut] * 3) as server:
        proc = nightowl("run", user_repo, "--task", "fix add()", "--base-url", server.base_url, "--model",
                        server.model, "--out", tmp_path / "runs", "--max-tokens", "16", timeout=120)
    assert proc.returncode == 1 and "format_error" in proc.stdout
    assert "2 uncommitted or untracked path(s)" in proc.stderr and "not part of the run" in proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.lstrip().startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1", "2", "3"], proc.stderr
    assert all("cut off at --max-tokens" in line for line in steps)


def test_help_shows_no_bool_metavars_and_version_prints():
    for args in (["--help"], ["run", "--help"], ["shift", "--help"]):
        proc = nightowl(*args, timeout=120)
        assert proc.returncode == 0 and "<bool>" not in proc.stdout and "--json" in proc.stdout or args == ["--help"]
    version = nightowl("--version", timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("nightowl ")


def test_run_help_states_defaults_from_the_settings():
    proc = nightowl("run", "--help", timeout=120)
    assert "agent.max_steps" in proc.stdout and "default: 100" in proc.stdout


def test_the_scripted_server_surfaces_its_own_exceptions():
    import httpx

    def broken(request: dict) -> dict:
        raise KeyError("the script looked for a key that is not there")

    server = ScriptedServer(broken).__enter__()
    reply = httpx.post(server.base_url + "/chat/completions", json={"messages": []}, timeout=10)
    assert reply.status_code == 500 and "KeyError" in reply.json()["error"]["message"]
    with pytest.raises(ScriptError, match="KeyError"):
        server.stop()
