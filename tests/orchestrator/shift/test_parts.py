import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from agent.scripted_server import ScriptedServer
from orchestrator.errors import UsageError
from orchestrator.shift.dashboard import Dashboard
from orchestrator.shift.endpoints import EndpointPool
from orchestrator.shift.engine import Shift, ShiftOptions, file_source, parse_until
from tests.orchestrator.helpers import SANDBOX, agent_reply, make_repo, write_tasks

ROOT = Path(__file__).resolve().parents[3]


def test_local_executor_needs_no_ray():
    code = ("import sys, orchestrator.cli.main, orchestrator.shift.engine, orchestrator.shift.executors; "
            "orchestrator.shift.executors.make_executor('local'); assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_parse_until():
    now = datetime(2026, 1, 1, 22, 0)
    assert datetime.fromtimestamp(parse_until("23:30", now)) == datetime(2026, 1, 1, 23, 30)
    assert datetime.fromtimestamp(parse_until("06:00", now)) == datetime(2026, 1, 2, 6, 0)
    with pytest.raises(UsageError):
        parse_until("7pm", now)


def test_dashboard_renders():
    snap = {"counts": {"tasks": 3, "states": {"queued": 1, "running": 1, "done": 1, "failed": 0}, "exit_status": {},
                       "attempts": 2, "tokens": 1000},
            "running": [{"task": "t-1", "run_id": "t-1.1", "server": "http://x/v1", "steps": 3, "tokens": 500,
                         "elapsed_s": 12.0, "idle_s": 1.0}],
            "servers": [{"url": "http://x/v1", "healthy": True, "in_flight": 1, "cap": 4, "last_error": ""}],
            "elapsed_s": 30.0, "deadline": time.time() + 3600, "stopped": None}
    console = Console(record=True, width=120)
    console.print(Dashboard().render(snap))
    text = console.export_text()
    assert "t-1" in text and "deadline in" in text and "ETA" in text


def test_pool_caps_and_waits_for_a_healthy_server():
    pool = EndpointPool(["http://127.0.0.1:9/v1"], "m", cap_per_server=1, backoff_s=0.1)
    ep = pool.acquire(lambda: False)
    t0 = time.monotonic()
    assert pool.acquire(lambda: time.monotonic() - t0 > 0.3) is None  # capped: waits, then gives up
    pool.release(ep)
    pool.mark_failed(ep, "down")
    assert not pool.any_healthy()
    assert pool.acquire(lambda: time.monotonic() - t0 > 0.6) is None  # paused while none is healthy


def test_token_budget_stops_the_shift(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    with ScriptedServer(lambda r: agent_reply(r, sleep=0.2)) as server:
        opts = ShiftOptions(repo=repo, out=tmp_path / "out", model="scripted", base_urls=[server.base_url],
                            workers=2, sandbox=SANDBOX, heartbeat_s=0.1, token_budget=500)
        report = Shift(opts, sources=[file_source(tasks)]).run()
    assert report.stopped == "token_budget" and not report.complete
    assert report.counts["states"]["running"] == 0


def test_ray_attempts_ask_for_the_sandbox_memory_unless_told(tmp_path):
    from orchestrator.shift.executors import RayPlacement
    from sandbox.limits import ResourceLimits

    repo = make_repo(tmp_path / "repo")

    def placement(**kw):
        return Shift(ShiftOptions(repo=repo, out=tmp_path / "out", model="m", base_urls=["http://x"], **kw),
                     sources=[]).ray_placement()
    assert placement(limits=ResourceLimits(memory_mb=3000)) == RayPlacement(cpus_per_agent=1, memory_mb_per_agent=3000)
    told = RayPlacement(cpus_per_agent=0.5, memory_mb_per_agent=700)
    assert placement(limits=ResourceLimits(memory_mb=3000), ray_placement=told) == told
    assert placement(limits=ResourceLimits(memory_mb=None)).memory_mb_per_agent is None


def test_shift_flags_reach_the_ray_placement(tmp_path):
    from orchestrator.cli.config import given
    from orchestrator.settings import load_settings

    s = load_settings(None, None, given({"shift.ray_cpus_per_agent": (2.5, "--ray-cpus-per-agent"),
                                         "shift.ray_memory_mb_per_agent": (900, "--ray-memory-per-agent")})).settings
    assert (s.shift.ray_cpus_per_agent, s.shift.ray_memory_mb_per_agent) == (2.5, 900)
    (tmp_path / "nightowl.toml").write_text("[shift]\nray_cpus_per_agent = 0\n")
    with pytest.raises(UsageError, match="ray_cpus_per_agent"):
        load_settings(tmp_path / "nightowl.toml", None, {})
