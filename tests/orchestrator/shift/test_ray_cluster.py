"""A shift on a real two-node Ray cluster (a head and a second node, each started with `ray start` on this machine):
attempts are spread over both nodes, a node that dies mid-attempt has its attempt retried on the other one with
no duplicate result, and a path a node does not see is named before anything runs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from agent.scripted_server import ScriptedServer
from orchestrator.errors import UsageError
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from orchestrator.shift.executors import RayPlacement
from orchestrator.shift.ray_executor import RayExecutor, check_nodes_see
from tests.helpers import git
from tests.orchestrator.helpers import SANDBOX, agent_reply, nightowl_branches, shift_inputs

RAY = str(Path(sys.executable).with_name("ray"))
# Ray's default token authentication stays on, as for a user: the nodes and this process (RAY_AUTH_MODE set in
# tests/conftest.py) share ~/.ray/auth_token.
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(*args: str) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args], env=ENV,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_node(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def alive_nodes() -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n["Alive"]]


class Cluster:
    def __init__(self, head: subprocess.Popen, second: subprocess.Popen, address: str):
        self.head, self.second, self.address = head, second, address


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # what a user does once per machine before `ray start`: make the token if there is none yet (it prints it)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=ENV, check=True, capture_output=True)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="nr-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = start_node("--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false")
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:  # the head answers once its GCS is up
            probe = subprocess.run([RAY, "status", "--address", address], env=ENV, capture_output=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        second = start_node("--address", address, "--resources", '{"second_node": 1}')
        nodes.append(second)
        ray.init(address=address, log_to_driver=False)
        while len(alive_nodes()) < 2:
            assert second.poll() is None and time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(0.5)
        yield Cluster(head, second, address)
    finally:
        ray.shutdown()
        for proc in reversed(nodes):
            stop_node(proc)
    # the kill reached them: no process of either node is left
    assert head.poll() is not None and all(p.poll() is not None for p in nodes)
    left = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
    assert left == []


def shift_options(repo: Path, out: Path, base_url: str, **kw) -> ShiftOptions:
    return ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[base_url], workers=2, sandbox=SANDBOX,
                        executor="ray", heartbeat_s=0.2, **kw)


def on_the_cluster(cluster: Cluster, tmp_path: Path, n: int) -> tuple[Path, Path, Path, RayExecutor]:
    """A repository, n tasks, --out and an executor on the cluster asking one CPU per agent: with one CPU per node,
    two agents at once can only run on two nodes."""
    repo, tasks, out = shift_inputs(tmp_path, n)
    out.mkdir()
    return repo, tasks, out, RayExecutor(cluster.address, 2, RayPlacement(cpus_per_agent=1), [repo], [out])


@pytest.mark.slow
def test_attempts_run_on_both_nodes(cluster: Cluster, tmp_path: Path) -> None:
    repo, tasks, out, executor = on_the_cluster(cluster, tmp_path, 4)
    with ScriptedServer(lambda r: agent_reply(r, sleep=1.0)) as server:
        report = Shift(shift_options(repo, out, server.base_url), sources=[file_source(tasks)],
                       executor=executor).run()
    assert report.counts["exit_status"] == {"submitted": 4}
    assert len(executor.placements) == 4
    assert set(executor.placements.values()) == set(alive_nodes())
    assert len(nightowl_branches(repo)) == 4


@pytest.mark.slow
def test_an_attempt_on_a_node_that_dies_is_retried_on_the_other_once(cluster: Cluster, tmp_path: Path) -> None:
    repo, tasks, out, executor = on_the_cluster(cluster, tmp_path, 3)
    second_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second_node" in n["Resources"])
    with ScriptedServer(lambda r: agent_reply(r, sleep=3.0)) as server:
        shift = Shift(shift_options(repo, out, server.base_url), sources=[file_source(tasks)], executor=executor)

        def kill_second_node_mid_attempt(s: Shift) -> None:
            def kill() -> None:
                while not any(r.steps >= 1 for r in list(s.running.values())):
                    time.sleep(0.05)
                stop_node(cluster.second)
            import threading
            threading.Thread(target=kill, daemon=True).start()
        report = shift.run(on_start=kill_second_node_mid_attempt)
    assert cluster.second.poll() is not None  # the kill reached the node
    assert second_id not in alive_nodes()
    assert report.counts["states"]["done"] == 3 and report.counts["exit_status"] == {"submitted": 3}
    events = (out / "events.jsonl").read_text()
    assert "was lost" in events  # the dead node's attempt ended as an infrastructure error, and was retried
    branches = nightowl_branches(repo)
    assert len(branches) == 3  # one result per task: nothing ran twice into a result
    for i in range(3):
        assert git(repo, "show", f"nightowl/t-{i:03d}:out/t-{i:03d}.txt").strip() == f"t-{i:03d}"


@pytest.mark.slow
def test_a_path_no_node_sees_is_named_before_anything_runs(cluster: Cluster, tmp_path: Path) -> None:
    missing = tmp_path / "only-on-the-laptop"
    with pytest.raises(UsageError) as e:
        check_nodes_see([missing], [tmp_path])
    message = str(e.value)
    assert message.count(str(missing)) == 2  # both nodes are named with the path they do not see
    assert "(not found)" in message and "storage every node mounts" in message
    check_nodes_see([tmp_path], [tmp_path])  # what every node sees passes
