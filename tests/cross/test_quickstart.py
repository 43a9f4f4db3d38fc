"""The README quickstart as a newcomer runs it: `nightowl tiny-model`, the example repo, and `nightowl run`
without --base-url, which starts the real vLLM server itself and stops it afterwards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.readme_commands import quickstart_usage

ROOT = Path(__file__).resolve().parents[2]


def nightowl(*args: object, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def vllm_processes_for(model_dir: Path) -> list[str]:
    ps = subprocess.run(["pgrep", "-af", "--", str(model_dir)], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if " serve " in line]


@pytest.mark.slow
def test_the_readme_quickstart_runs_as_written(tmp_path):
    """The README's quickstart after its install step, verbatim except that its /tmp/ paths are this test's own."""
    command = quickstart_usage()
    assert command.startswith("nightowl tiny-model /tmp/nightowl-tiny && examples/make_example_repo.sh")
    own = command.replace("/tmp/", f"{tmp_path}/")
    model_dir, out = tmp_path / "nightowl-tiny", tmp_path / "nightowl-runs"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", own], capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
    print(f"\n[README quickstart (tiny model, vLLM start, run, show): {time.monotonic() - started:.1f} s]")
    assert "starting a vLLM server" in proc.stderr, proc.stderr[-3000:]
    # Random weights do not solve the task: the run ends at a limit, with the trajectory and patch written, and
    # `nightowl show` (the last command, whose exit code this is) prints it.
    assert proc.returncode == 0 and "nightowl trajectory" in proc.stdout, proc.stderr[-3000:]
    (run_dir,) = out.iterdir()
    traj = json.loads((run_dir / "trajectory.json").read_text())
    assert traj["exit_status"] in {"max_steps", "format_error", "stuck", "context_exceeded"}
    assert traj["model"] == str(model_dir) and len(traj["steps"]) >= 1
    assert traj["sandbox"]["backend"] == "bwrap"
    assert (run_dir / "patch.diff").is_file()
    assert subprocess.run(["git", "-C", tmp_path / "calculator", "branch", "--list", "nightowl/*"],
                          capture_output=True, text=True).stdout == ""
    log = run_dir / "vllm.log"  # the server's log stays with the run
    assert str(log) in proc.stderr and "Starting vLLM" in log.read_text(errors="replace")
    assert vllm_processes_for(model_dir) == []  # the server it started is gone


@pytest.mark.slow
def test_a_model_directory_that_is_not_a_model_fails_with_one_line(tmp_path, user_repo_for_quickstart):
    (tmp_path / "not-a-model").mkdir()
    proc = nightowl("run", user_repo_for_quickstart, "--task", "x", "--model", tmp_path / "not-a-model",
                    "--out", tmp_path / "runs", timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "has no config.json" in proc.stderr
    assert vllm_processes_for(tmp_path / "not-a-model") == []


@pytest.fixture
def user_repo_for_quickstart(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    return repo
