"""The README quickstart as a newcomer runs it: `nightowl tiny-model`, the example repo, and `nightowl run`
without --base-url, which starts the real vLLM server itself and stops it afterwards."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def nightowl(*args: object, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def vllm_processes_for(model_dir: Path) -> list[str]:
    ps = subprocess.run(["pgrep", "-af", "--", str(model_dir)], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if " serve " in line]


@pytest.mark.slow
def test_quickstart_starts_vllm_runs_the_agent_and_stops_the_server(tmp_path):
    model_dir, repo, out = tmp_path / "tiny", tmp_path / "calculator", tmp_path / "runs"
    built = nightowl("tiny-model", model_dir)
    assert built.returncode == 0, built.stderr
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)

    started = time.monotonic()
    proc = nightowl("run", repo, "--task-file", ROOT / "examples" / "calculator" / "TASK.md", "--model", model_dir,
                    "--tool-choice", "required", "--max-steps", "3", "--max-tokens", "64", "--out", out, "--json")
    elapsed = time.monotonic() - started
    print(f"\n[nightowl run with its own vLLM server: {elapsed:.1f} s]")
    assert "starting a vLLM server" in proc.stderr
    # Random weights do not solve the task: the run ends at a limit, with the trajectory and patch written.
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["exit_status"] in {"max_steps", "format_error", "stuck", "context_exceeded"}
    traj = json.loads(Path(result["trajectory_path"]).read_text())
    assert traj["model"] == str(model_dir) and len(traj["steps"]) >= 1
    assert traj["sandbox"]["backend"] == "bwrap"
    assert Path(result["patch_path"]).is_file() and result["branch"] is None
    log = Path(result["trajectory_path"]).parent / "vllm.log"  # the server's log stays with the run
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
