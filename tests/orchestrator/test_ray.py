import pytest

ray = pytest.importorskip("ray")

from agent.scripted_server import ScriptedServer  # noqa: E402
from orchestrator.shift import Shift, ShiftOptions, file_source  # noqa: E402
from tests.orchestrator.helpers import agent_reply, fingerprint, git, make_repo, nightowl_branches, write_tasks  # noqa: E402


@pytest.mark.slow
def test_ray_executor_runs_a_small_shift(tmp_path):
    repo = make_repo(tmp_path / "repo")
    before = fingerprint(repo)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with ScriptedServer(agent_reply) as server:
            opts = ShiftOptions(repo=repo, out=tmp_path / "out", model="scripted", base_urls=[server.base_url],
                                workers=2, sandbox="local", executor="ray", heartbeat_s=0.2)
            report = Shift(opts, sources=[file_source(tasks)]).run()
    finally:
        ray.shutdown()
    assert report.complete and report.counts["states"]["done"] == 4
    assert report.counts["exit_status"] == {"submitted": 4}
    assert len(nightowl_branches(repo)) == 4
    assert git(repo, "show", "nightowl/t-002:out/t-002.txt").strip() == "t-002"
    assert fingerprint(repo) == before
