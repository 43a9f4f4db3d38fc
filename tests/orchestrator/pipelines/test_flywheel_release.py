"""The flywheel releases the student server's accelerator around `train` and restores it (issue 20, item 1).

Fast: the release mode chosen from the devices (overlap refused), and `--dry-run`. Slow: the sleep path against a
scripted server with /sleep, /wake_up and /is_sleeping, and the stop/restart path against the real vLLM server on
CPU, each killed -9 between steps and resumed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.scripted_server import ScriptedServer
from orchestrator.cli.main import app
from orchestrator.errors import UsageError
from orchestrator.serving.student import choose_release, parse_devices
from tests.orchestrator.helpers import SANDBOX, kill_9_once_exists
from training.synthesis.scripted_teacher import request_kind, target_of, teacher

ROOT = Path(__file__).resolve().parents[3]
EIGHT = list(range(8))


def test_release_mode_from_the_devices() -> None:
    url = "http://127.0.0.1:8000/v1"
    assert choose_release("auto", True, None, None, url, EIGHT)[0] == "sleep"  # one GPU pool, nightowl's server
    assert choose_release("auto", True, [4, 5, 6, 7], [0, 1, 2, 3], url, EIGHT)[0] == "none"
    assert choose_release("auto", False, [4, 5, 6, 7], [0, 1, 2, 3], url, EIGHT)[0] == "none"
    assert choose_release("auto", True, [3, 4], [0, 1, 2, 3], url, EIGHT)[0] == "sleep"
    assert choose_release("auto", True, None, None, url, [])[0] == "none"  # CPU: RAM is shared
    assert choose_release("auto", False, None, None, "https://gpu.example/v1", EIGHT)[0] == "none"
    assert choose_release("restart", True, None, None, url, [])[0] == "restart"
    assert choose_release("sleep", False, [0], [0], url, EIGHT)[0] == "sleep"  # the user's server sleeps
    for args, message in (
        (("auto", False, None, None, url, EIGHT), "cannot release a server it did not start"),
        (("auto", False, [3, 4], [0, 1, 2, 3], url, EIGHT), "share GPU 3"),
        (("auto", False, [3, 4], [0, 1, 2, 3], url, []), "share GPU 3"),
        (("restart", False, [4], [0], url, EIGHT), "--release restart stops and starts the server the flywheel"),
        (("sleep", True, None, None, url, []), "sleep mode needs a GPU"),
        (("auto", True, [8], None, url, EIGHT), "this machine has GPUs 0,1,2,3,4,5,6,7"),
        (("later", True, None, None, url, EIGHT), "--release must be"),
    ):
        with pytest.raises(UsageError, match=message):
            choose_release(*args)
    assert parse_devices("4, 5,6,7", "--train-devices") == [4, 5, 6, 7]
    with pytest.raises(UsageError, match="--train-devices must list device indices"):
        parse_devices("4,4", "--train-devices")


def flywheel_args(repo: Path, out: Path, base: Path, teacher_url: str, *extra: str) -> list[str]:
    return ["flywheel", str(repo), "--rounds", "2", "--base", str(base), "--teacher-base-url", teacher_url,
            "--teacher-model", "scripted", "--tasks", str(ROOT / "examples" / "calculator" / "tasks.yaml"),
            "--out", str(out), "--samples", "2", "--metric", "submit", "--max-steps", "4", "--sandbox", SANDBOX,
            "--train-args", "--max-steps 2 --rank 8 --save-steps 1 --max-length 4096", *extra]


@pytest.fixture
def calculator(tmp_path: Path) -> Path:
    repo = tmp_path / "calc"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    return repo


def test_dry_run_prints_a_rounds_steps_in_order(calculator: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fly"
    runner = CliRunner()
    result = runner.invoke(app, flywheel_args(calculator, out, tiny_model_dir, "http://127.0.0.1:9/v1",
                                              "--student-base-url", "http://127.0.0.1:8123/v1", "--release", "sleep",
                                              "--dry-run"))
    assert result.exit_code == 0, result.output
    steps = re.findall(r"^  (\d)\. (\w+): (.*)$", result.stdout, re.M)
    assert [s[1] for s in steps] == ["generate", "export", "release", "train", "restore", "load", "eval", "decide"]
    assert [int(s[0]) for s in steps] == list(range(1, 9))
    text = {s[1]: s[2] for s in steps}
    assert text["release"].startswith("POST http://127.0.0.1:8123/sleep?level=1")
    assert text["restore"].startswith("POST http://127.0.0.1:8123/wake_up")
    assert text["train"].startswith("nightowl train --base") and "--max-steps 2" in text["train"]
    assert "round 1 of" in result.stdout and "train memory plan: about" in result.stdout and "fits" in result.stdout
    assert not out.exists()

    restart = runner.invoke(app, flywheel_args(calculator, out, tiny_model_dir, "http://127.0.0.1:9/v1",
                                               "--release", "restart", "--dry-run"))
    assert restart.exit_code == 0, restart.output
    assert re.search(r"3\. release: stop the vLLM server nightowl started \(.* on port \d+\)", restart.stdout)
    assert re.search(r"5\. restore: start the vLLM server again on the same port", restart.stdout)
    assert not out.exists()
    split = runner.invoke(app, flywheel_args(calculator, out, tiny_model_dir, "http://127.0.0.1:9/v1",
                                             "--student-base-url", "http://127.0.0.1:8123/v1", "--train-devices",
                                             "4,5", "--serve-devices", "0,1", "--dry-run"))
    assert split.exit_code == 0, split.output
    # two training GPUs: one torchrun process each (DDP), on those GPUs only
    assert re.search(r"4\. train: CUDA_VISIBLE_DEVICES=4,5 \S+ -m torch.distributed.run --standalone "
                     r"--nproc_per_node 2 -m orchestrator.cli.main train --base", split.stdout), split.stdout
    refused = runner.invoke(app, flywheel_args(calculator, out, tiny_model_dir, "http://127.0.0.1:9/v1",
                                               "--student-base-url", "http://127.0.0.1:8123/v1", "--train-devices",
                                               "1,2", "--serve-devices", "0,1", "--dry-run"))
    assert refused.exit_code == 2 and "share GPU 1" in refused.output, refused.output


class SleepyServer(ScriptedServer):
    """A scripted student with vLLM's sleep endpoints; it answers nothing while asleep and records what came."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.sleeping = False
        self.events: list[str] = []
        self.while_asleep: list[str] = []
        super().__init__(*args, **kwargs)

    def _handler(self) -> type:
        base, server = super()._handler(), self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                if self.path.startswith("/is_sleeping"):
                    self.send_json(200, {"is_sleeping": server.sleeping})
                    return
                if server.sleeping and self.path.startswith("/v1"):
                    server.while_asleep.append("GET " + self.path)
                super().do_GET()

            def do_POST(self) -> None:
                if self.path.startswith("/sleep") or self.path.startswith("/wake_up"):
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    server.sleeping = self.path.startswith("/sleep")
                    server.events.append("sleep" if server.sleeping else "wake")
                    self.send_json(200, {"status": "sleeping" if server.sleeping else "awake"})
                    return
                if server.sleeping:
                    server.while_asleep.append("POST " + self.path)
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self.send_json(503, {"error": {"message": "asleep"}})
                    return
                super().do_POST()

        return Handler


def student(request: dict) -> dict:
    if request_kind(request) == "t2" and target_of(request) is not None:
        return teacher(request)
    if not request.get("model", "").endswith("-r1"):
        return {"content": "I would edit calc.py."}
    if not any(m["role"] == "assistant" for m in request["messages"]):
        return {"tool_calls": [{"name": "bash", "arguments": {"command": "echo '# looked' >> calc.py"}}]}
    return {"tool_calls": [{"name": "submit", "arguments": {}}]}


def rounds_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sleep_path_killed_between_steps_and_resumed(calculator: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fly"
    with ScriptedServer(teacher, model="scripted") as t, SleepyServer(student, model=str(tiny_model_dir)) as s:
        cmd = [sys.executable, "-m", "orchestrator.cli.main",
               *flywheel_args(calculator, out, tiny_model_dir, t.base_url, "--student-base-url", s.base_url,
                              "--release", "sleep")]
        # killed after the release (the server sleeps), while training runs
        kill_9_once_exists(cmd, out / "round-1" / "train.log", cwd=ROOT)
        assert json.loads((out / "round-1" / "release.json").read_text())["mode"] == "sleep"
        assert s.sleeping and s.events == ["sleep"] and not (out / "round-1" / "restore.json").exists()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not s.sleeping and s.while_asleep == []
        # round 1: slept before train, woke after (the re-run found it asleep and did not sleep it again);
        # round 2: the same
        assert s.events == ["sleep", "wake", "sleep", "wake"]
        assert set(s.adapters) == {"fly-r1", "fly-r2"}
    rounds = rounds_of(out)
    assert [r["release"] for r in rounds] == ["sleep", "sleep"]
    for r in rounds:
        steps = list(r["seconds"])
        assert steps.index("release") == steps.index("train") - 1 == steps.index("restore") - 2
        assert isinstance(r["seconds"]["release"], float) and isinstance(r["seconds"]["restore"], float)
    assert json.loads((out / "round-1" / "restore.json").read_text())["action"] == "woken"
    assert "around train: sleep (--release sleep)" in proc.stderr


def vllm_processes(model_dir: Path) -> list[str]:
    ps = subprocess.run(["pgrep", "-af", "--", str(model_dir)], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if " serve " in line]


@pytest.mark.slow
def test_restart_path_with_the_real_vllm_server(calculator: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The flywheel starts vLLM itself (CPU), stops it before each `train` and starts it again after, on the same
    port; killed -9 after round 2's release, the re-run trains without a server and starts it for the eval."""
    out = tmp_path / "fly"
    # its own copy of the model: the session's shared vLLM server (other tests) serves tiny_model_dir itself
    student = Path(shutil.copytree(tiny_model_dir, tmp_path / "student"))
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("- id: fix-add\n  task: \"`add(2, 3)` returns -1 instead of 5. Fix it in calc.py.\"\n")
    with ScriptedServer(teacher, model="scripted") as t:
        args = flywheel_args(calculator, out, student, t.base_url, "--release", "restart", "--max-tokens",
                             "16", "--max-model-len", "4096")
        args[args.index("--tasks") + 1] = str(tasks)
        cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
        kill_9_once_exists(cmd, out / "round-2" / "train.log", cwd=ROOT, timeout=1500)
        assert json.loads((out / "round-2" / "release.json").read_text())["action"] == "stopped"
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen_during_train: list[list[str]] = []

        def watch() -> None:  # while round 2 trains after the resume, no vLLM runs
            while proc.poll() is None and not (out / "round-2" / "train.json").exists():
                seen_during_train.append(vllm_processes(student))
                threading.Event().wait(0.5)
        watcher = threading.Thread(target=watch)
        watcher.start()
        stdout, stderr = proc.communicate(timeout=1500)
        watcher.join()
        assert proc.returncode == 0, stderr[-3000:]
    assert seen_during_train and not any(seen_during_train)
    rounds = rounds_of(out)
    assert [r["release"] for r in rounds] == ["restart", "restart"]
    release1 = json.loads((out / "round-1" / "release.json").read_text())
    restore2 = json.loads((out / "round-2" / "restore.json").read_text())
    # round 1 needed no server before train (nothing promoted yet): it first starts at round 1's restore
    assert release1["action"] == "not running" and restore2["action"] == "started"
    log = (out / "vllm.log").read_text(errors="replace")
    assert log.count("Starting vLLM") >= 2 or log.count("Application startup complete") >= 2, log[-2000:]
    assert all(r["seconds"]["restore"] > 1 for r in rounds)  # a real start each time
    assert vllm_processes(student) == []
