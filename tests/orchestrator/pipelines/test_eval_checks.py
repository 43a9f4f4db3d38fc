"""A benchmark task's test check runs where the agent ran: with the environment the repository declares."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.pipelines import eval_checks
from training.evaluation import benchmark

# The set-up installs the repository's test runner into /env (a stand-in for `pip install -e '.[test]'`, offline)
DECLARED = r"""[sandbox]
path = ["/env/bin"]

[environment]
setup = 'mkdir -p /env/bin && printf "#!/bin/sh\ngrep -qx 42 answer.txt\n" > /env/bin/run-tests && chmod +x /env/bin/run-tests'
"""


def commit_all(repo: Path, message: str) -> str:
    for args in (["add", "-A"], ["-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", message]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize("declared", [True, False])
def test_the_check_uses_the_declared_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 declared: bool) -> None:
    monkeypatch.setenv("NIGHTOWL_ENV_CACHE", str(tmp_path / "envs"))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "answer.txt").write_text("41\n")
    if declared:
        (repo / "nightowl.toml").write_text(DECLARED)
    commit = commit_all(repo, "the answer is off by one")
    check = benchmark.TestCheck(files=["answer.txt"], patch="", command="run-tests")
    fix = ("diff --git a/answer.txt b/answer.txt\n--- a/answer.txt\n+++ b/answer.txt\n"
           "@@ -1 +1 @@\n-41\n+42\n")
    # declared: the runner from /env fails before the fix and passes after it; without the declaration there is
    # no runner in the sandbox, so the check cannot pass (as on a host without the repository's test runner)
    assert eval_checks.tests_pass(repo, commit, check, "", "bwrap", timeout_s=60) is False
    assert eval_checks.tests_pass(repo, commit, check, fix, "bwrap", timeout_s=60) is declared
    assert (tmp_path / "envs").exists() is declared
