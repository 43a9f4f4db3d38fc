"""The flywheel's control loop as a subprocess: real generate, export, LoRA training on the tiny model, adapter
loading over HTTP and eval; the student server is scripted so each round's quality is known in advance
(round 1 good, round 2 deliberately worse). kill -9 in the middle of round 1, then resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from tests.orchestrator.helpers import SANDBOX, kill_9_once_exists
from training.synthesis.scripted_teacher import request_kind, target_of, teacher

ROOT = Path(__file__).resolve().parents[3]


def student(request: dict) -> dict:
    """Generation's T2 rollouts are answered like the teacher; on eval tasks only `fly-r1` calls tools."""
    if request_kind(request) == "t2" and target_of(request) is not None:
        return teacher(request)
    if request.get("model") != "fly-r1":
        return {"content": "I would edit calc.py."}
    if not any(m["role"] == "assistant" for m in request["messages"]):
        return {"tool_calls": [{"name": "bash", "arguments": {"command": "echo '# looked' >> calc.py"}}]}
    return {"tool_calls": [{"name": "submit", "arguments": {}}]}


def flywheel_cmd(repo: Path, out: Path, rounds: int, base: Path, student_url: str, teacher_url: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli.main", "flywheel", str(repo), "--rounds", str(rounds), "--base", str(base),
            "--teacher-base-url", teacher_url, "--teacher-model", "scripted", "--student-base-url", student_url,
            "--tasks", str(ROOT / "examples" / "calculator" / "tasks.yaml"), "--out", str(out), "--samples", "2",
            "--metric", "submit", "--max-steps", "4", "--sandbox", SANDBOX,
            "--train-args", "--max-steps 2 --rank 8 --save-steps 1 --max-length 4096"]


@pytest.mark.slow
def test_two_rounds_promote_only_the_better_one_and_survive_kill_9(tmp_path: Path, tiny_model_dir: Path) -> None:
    repo, out = tmp_path / "calc", tmp_path / "fly"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    with ScriptedServer(teacher, model="scripted") as t, \
         ScriptedServer(student, model=str(tiny_model_dir)) as s:
        cmd = flywheel_cmd(repo, out, 2, tiny_model_dir, s.base_url, t.base_url)
        # mid-round: generate and export are done, training is running
        kill_9_once_exists(cmd, out / "round-1" / "train.log", cwd=ROOT)
        generated = (out / "round-1" / "generate.json").stat().st_mtime_ns
        assert not (out / "round-1" / "train.json").exists()

        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / "round-1" / "generate.json").stat().st_mtime_ns == generated  # finished steps are not redone
        assert set(s.adapters) == {"fly-r1", "fly-r2"}

    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [(r["round"], r["candidate"], r["against"], r["verdict"], r["promoted"]) for r in rounds] == [
        (1, "fly-r1", str(tiny_model_dir), "better", True),
        (2, "fly-r2", "fly-r1", "worse", False)]
    assert rounds[0]["diff"] == 1.0 and rounds[1]["diff"] == -1.0
    best = json.loads((out / "best.json").read_text())
    assert best["model"] == "fly-r1" and best["round"] == 1 and Path(best["adapter"], "adapter_config.json").is_file()
    assert (out / "best").resolve() == Path(best["adapter"]).resolve()  # `--model DIR/best` finds the adapter
    assert json.loads(proc.stdout.strip().splitlines()[-1])["best"]["model"] == "fly-r1"
    # each round shows its before/after table on the terminal
    assert "round 2: before = fly-r1, after = fly-r2" in proc.stderr and "submit -1.00" in proc.stderr
    report = (out / "round-2" / "report.md").read_text()
    assert "verdict **worse**" in report and "not promoted" in report
    assert all(isinstance(v, float) for v in rounds[0]["seconds"].values())


def test_a_round_stops_at_the_first_step_that_produced_nothing(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A teacher that never submits: generate exits non-zero with its reasons; the flywheel stops there, says
    why in one line, and neither exports nor trains on nothing."""
    repo, out = tmp_path / "calc", tmp_path / "fly"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)

    def never_submits(request: dict) -> dict:
        if request_kind(request) in ("t1", "t2"):
            return {"tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]}
        return teacher(request)

    with ScriptedServer(never_submits, model="scripted") as t, ScriptedServer(student, model=str(tiny_model_dir)) as s:
        proc = subprocess.run(flywheel_cmd(repo, out, 1, tiny_model_dir, s.base_url, t.base_url), cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "generate failed (exit 1)" in errors[0] and "0 samples" in errors[0]
    assert "t1_exhausted" in errors[0] and "Traceback" not in proc.stderr
    assert not (out / "round-1" / "generate.json").exists() and not (out / "round-1" / "export.log").exists()
