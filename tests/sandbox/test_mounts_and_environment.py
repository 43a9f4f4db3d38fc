"""What the agent can see (hidden and read-only mounts), the repository's declared environment and its set-up, and a
self-check that measures (a deliberately broken sandbox must report what is broken)."""
from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.scripted_server import ScriptedServer
from agent.trajectory import load_trajectory
from sandbox.bwrap import BubblewrapSandbox
from sandbox.policy import Mount, Policy
from sandbox.repo_config import RepoConfigError, load_repo_config
from sandbox.workspace import create_workspace
from tests.agent.scripts import by_turn, native
from tests.sandbox.conftest import TEST_LIMITS


def test_a_file_planted_under_srv_is_not_readable(make_sandbox):
    planted = Path("/srv") / f"nightowl-test-{uuid.uuid4().hex[:8]}"
    planted.mkdir(parents=True)
    (planted / ".env").write_text("API_TOKEN=planted-secret\n")
    try:
        sb = make_sandbox("bwrap")
        result = sb.execute(f"cat {planted}/.env; ls -d /srv /work /var /mnt /media /home /root 2>&1", timeout=10)
        assert "planted-secret" not in result.output and "No such file" in result.output
        for top in ("/srv", "/work", "/var", "/mnt", "/media", "/home", "/root"):
            assert f"cannot access '{top}'" in result.output, top
        check = sb.self_check()
        assert not {"srv", "work", "var", "mnt", "media", "home", "root"} & set(check["root_entries"])
        assert check["unexpected_root_entries"] == [] and check["isolated"] is True
    finally:
        shutil.rmtree(planted)


class LeakySandbox(BubblewrapSandbox):
    """Misconfigured behind the policy's back: the host network and the run directory shared."""

    def _build_argv(self) -> list[str]:
        argv = super()._build_argv()
        run_dir = str(self.host_root.parent)
        return [*argv, "--bind", self._source(run_dir), run_dir, "--share-net"]


def test_self_check_measures_and_reports_a_broken_sandbox(user_repo, tmp_path, fake_home):
    good = BubblewrapSandbox(create_workspace(user_repo, "HEAD", tmp_path / "a" / "ws"), TEST_LIMITS)
    bad = LeakySandbox(create_workspace(user_repo, "HEAD", tmp_path / "b" / "ws"), TEST_LIMITS)
    try:
        ok, broken = good.self_check(), bad.self_check()
    finally:
        good.close()
        bad.close()
    assert ok["isolated"] is True and ok["network_blocked"] is True and ok["secrets_hidden"] is True
    assert ok["memory_limit_mb"] == TEST_LIMITS.memory_mb and ok["cpu_seconds"] == TEST_LIMITS.cpu_seconds
    assert ok["file_size_mb"] == TEST_LIMITS.file_size_mb and ok["capabilities_dropped"] is True
    assert "python3" in ok["interpreters"]
    assert broken["network_blocked"] is False and broken["canary_file_visible"] is True
    assert broken["secrets_hidden"] is False and broken["isolated"] is False


def wheel_index(tmp_path: Path) -> Path:
    """A real wheel of a package nobody has installed, served by a real HTTP index on the host."""
    src = tmp_path / "dep-src"
    (src / "nightowl_testdep").mkdir(parents=True)
    (src / "nightowl_testdep" / "__init__.py").write_text("def answer():\n    return 42\n")
    (src / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\nbuild-backend = '
                                        '"setuptools.build_meta"\n[project]\nname = "nightowl-testdep"\n'
                                        'version = "1.0"\n')
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(wheels)], check=True, capture_output=True)
    return wheels


def repo_needing_the_dependency(tmp_path: Path, port: int) -> Path:
    repo = tmp_path / "needs-dep"
    repo.mkdir()
    (repo / "test_answer.py").write_text("import nightowl_testdep\n\nassert nightowl_testdep.answer() == 42\n"
                                         "print('tests pass')\n")
    (repo / "nightowl.toml").write_text(
        '[sandbox]\npath = ["/env/venv/bin"]\n\n[environment]\n'
        f'setup = "python3 -m venv /env/venv && /env/venv/bin/pip install --no-index '
        f'--find-links http://127.0.0.1:{port}/ nightowl-testdep"\ntimeout_s = 300\n')
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "needs a dependency"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return repo


def test_the_setup_step_installs_what_the_tests_need_and_the_agent_runs_them_offline(tmp_path, monkeypatch):
    wheels = wheel_index(tmp_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(wheels))
    index = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=index.serve_forever, daemon=True).start()
    monkeypatch.setenv("NIGHTOWL_ENV_CACHE", str(tmp_path / "envs"))
    repo = repo_needing_the_dependency(tmp_path, index.server_address[1])
    steps = [lambda root: native("bash", command="python test_answer.py"),
             lambda root: native("bash", command=f"python -m pip download -q --no-index --find-links "
                                                 f"http://127.0.0.1:{index.server_address[1]}/ -d /tmp/x nightowl-testdep")]
    try:
        runs = []
        for _ in range(2):
            with ScriptedServer(by_turn(steps)) as server:
                request = RunRequest(repo=repo, task="run the tests", sandbox="auto", out_dir=tmp_path / "runs",
                                     model=ModelConfig(base_url=server.base_url, model=server.model, timeout_s=30))
                request.agent.max_steps = 2
                runs.append(load_trajectory(run_task(request).trajectory_path))
    finally:
        index.shutdown()
    first, second = runs
    test_run, offline = first.steps[0].executions[0], first.steps[1].executions[0]
    assert test_run.exit_code == 0 and "tests pass" in test_run.observation
    assert offline.exit_code != 0  # the agent's sandbox has no network: the same index is unreachable
    assert first.sandbox["network_blocked"] is True and "/env" in first.sandbox["mounts"]
    assert first.settings["environment"]["reused"] is False and second.settings["environment"]["reused"] is True
    log = Path(first.settings["environment"]["log"]).read_text()
    assert "Successfully installed nightowl-testdep-1.0" in log and "[exit code 0" in log
    assert second.steps[0].executions[0].exit_code == 0


def test_a_failing_setup_is_reported_with_its_log(tmp_path, monkeypatch, user_repo):
    monkeypatch.setenv("NIGHTOWL_ENV_CACHE", str(tmp_path / "envs"))
    (user_repo / "nightowl.toml").write_text('[environment]\nsetup = "echo installing; exit 3"\n')
    subprocess.run(["git", "-C", str(user_repo), "add", "nightowl.toml"], check=True)
    subprocess.run(["git", "-C", str(user_repo), "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "t"],
                   check=True)
    from sandbox.setup_env import EnvironmentSetupFailed
    with ScriptedServer([]) as server:
        request = RunRequest(repo=user_repo, task="x", sandbox="auto", out_dir=tmp_path / "runs",
                             model=ModelConfig(base_url=server.base_url, model=server.model))
        with pytest.raises(EnvironmentSetupFailed, match="exit code 3") as e:
            run_task(request)
    log = Path(str(e.value).rsplit("its log is ", 1)[1])
    assert "installing" in log.read_text()


def test_a_toolchain_outside_the_system_directories_is_mounted_read_only(make_sandbox, tmp_path):
    toolchain = Path("/srv") / f"nightowl-toolchain-{uuid.uuid4().hex[:8]}"
    (toolchain / "bin").mkdir(parents=True)
    (toolchain / "bin" / "mytool").write_text("#!/bin/sh\necho toolchain works\n")
    (toolchain / "bin" / "mytool").chmod(0o755)
    try:
        policy = Policy(shm_size_mb=32, tmp_size_mb=64, mounts=[Mount(source=str(toolchain))],
                        path_prepend=[str(toolchain / "bin")])
        sb = make_sandbox("bwrap", policy=policy)
        result = sb.execute(f"mytool && touch {toolchain}/bin/x", timeout=10)
        assert "toolchain works" in result.output and result.returncode != 0
        assert not (toolchain / "bin" / "x").exists()
    finally:
        shutil.rmtree(toolchain)


def test_repo_config_errors_name_the_field(user_repo):
    (user_repo / "nightowl.toml").write_text('[sandbox]\ntoolchain = ["/opt"]\n')
    subprocess.run(["git", "-C", str(user_repo), "add", "nightowl.toml"], check=True)
    subprocess.run(["git", "-C", str(user_repo), "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "t"],
                   check=True)
    with pytest.raises(RepoConfigError, match="sandbox.toolchain: Extra inputs"):
        load_repo_config(user_repo, "HEAD")
