import sqlite3
import threading
import time

import pytest
import ray  # the test install includes Ray: a missing or broken one fails here, never skips

from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from tests.helpers import git
from tests.orchestrator.helpers import (
    SANDBOX,
    agent_reply,
    fingerprint,
    nightowl_branches,
    shift_inputs,
)


@pytest.mark.slow
def test_ray_executor_runs_a_small_shift_stops_at_deadline_and_resumes(tmp_path):
    repo, tasks, out = shift_inputs(tmp_path, 4)
    before = fingerprint(repo)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with ScriptedServer(lambda r: agent_reply(r, sleep=0.6)) as server:
            def opts(**kw):
                return ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[server.base_url], workers=2,
                                    sandbox=SANDBOX, executor="ray", heartbeat_s=0.2, **kw)
            first_shift = Shift(opts(deadline=time.time() + 600), sources=[file_source(tasks)])

            def deadline_once_an_agent_has_stepped():
                while not any(r.steps >= 1 for r in list(first_shift.running.values())):
                    time.sleep(0.05)
                first_shift.opt.deadline = time.time()
            first = first_shift.run(on_start=lambda s: threading.Thread(
                target=deadline_once_an_agent_has_stepped, daemon=True).start())
            report = Shift(opts(), sources=[file_source(tasks)]).run()
    finally:
        ray.shutdown()
    assert first.stopped == "deadline"
    db = sqlite3.connect(out / "shift.sqlite")
    assert db.execute("SELECT COUNT(*) FROM attempts WHERE exit_status='interrupted'").fetchone()[0] >= 1
    assert report.complete and report.counts["states"]["done"] == 4
    assert report.counts["exit_status"] == {"submitted": 4}
    assert len(nightowl_branches(repo)) == 4
    assert git(repo, "show", "nightowl/t-002:out/t-002.txt").strip() == "t-002"
    assert fingerprint(repo) == before
