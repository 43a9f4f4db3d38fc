"""Policy defaults and loosening, the cgroup helper, backend selection and the local backend's basics."""
from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from sandbox.backends import BACKENDS as REGISTERED
from sandbox.cgroups import RunCgroup
from sandbox.errors import UserError
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.select import (
    ISOLATING_SANDBOXES,
    NoIsolationAvailable,
    SandboxKind,
    ensure_isolation,
    open_sandbox,
    workspace_owner,
)
from tests.sandbox.conftest import BACKENDS


def test_policy_defaults_are_safe(fake_home):
    p = Policy()
    assert p.network is False and p.writable_paths == []
    for path in ("/root", "/home", "/run", "/etc/shadow", "/etc/ssh", str(fake_home / ".ssh"),
                 str(fake_home / ".aws"), str(fake_home / ".config/gh"), os.environ["XDG_RUNTIME_DIR"]):
        assert path in p.hidden_paths
    assert ".git/hooks" in p.protected_paths and ".git/config" in p.protected_paths
    assert not any("TOKEN" in name or "KEY" in name for name in p.env_allow)


def test_loosen_applies_only_what_the_user_allowed():
    p = Policy()
    looser = p.loosen({"network"}, {"network": True, "writable_paths": ["/etc"]})
    assert looser.network is True and looser.writable_paths == []
    assert p.network is False
    with pytest.raises(UserError):
        p.loosen({"hidden_paths"}, {"hidden_paths": []})
    more_env = p.loosen({"env_allow"}, {"env_allow": ["CI", "GITHUB_TOKEN"]})
    assert "CI" in more_env.env_allow and "GITHUB_TOKEN" not in more_env.env_allow
    bigger = p.loosen({"limits"}, {"limits": {"memory_mb": 8192}})
    assert bigger.limits.memory_mb == 8192 and bigger.limits.cpu_seconds == p.limits.cpu_seconds


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root here")
def test_run_cgroup_limits_join_and_cleanup():
    cg = RunCgroup(memory_mb=128, max_processes=16)
    if cg.version == "none":
        pytest.skip("no writable cgroup controllers")
    proc = subprocess.Popen(["sleep", "60"], preexec_fn=cg.join)
    try:
        assert proc.pid in cg.pids_inside()
        assert cg.kill_all() == 0
        assert proc.wait(5) == -9
    finally:
        proc.kill()
        cg.close()
    assert cg.dirs == [] and cg.pids_inside() == set()


def test_unknown_kind_is_refused(make_sandbox, user_repo, tmp_path):
    from sandbox.workspace import create_workspace
    ws = create_workspace(user_repo, "HEAD", tmp_path / "wsx")
    with pytest.raises(UserError, match="unknown sandbox kind"):
        open_sandbox("chroot", ws)  # type: ignore[arg-type]


def test_every_registered_backend_is_a_sandbox_kind_and_only_isolating_ones_are_settings():
    assert set(get_args(SandboxKind)) == {"auto", *REGISTERED}
    assert ISOLATING_SANDBOXES == ("auto", "bwrap")
    assert "local" not in ISOLATING_SANDBOXES and not REGISTERED["local"].isolates


def test_isolation_check_and_workspace_owner_follow_the_registry(monkeypatch):
    ensure_isolation("local")  # the unisolated backend needs nothing installed
    assert workspace_owner("local") is None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    policy = Policy()
    assert workspace_owner("auto", policy) == workspace_owner("bwrap", policy) == (policy.run_as_uid, policy.run_as_gid)
    assert workspace_owner("local", policy) is None


def test_a_backend_that_cannot_start_names_its_install_hint(monkeypatch):
    broken = replace(REGISTERED["bwrap"], problem=lambda policy: "bwrap is not installed")
    monkeypatch.setitem(REGISTERED, "bwrap", broken)
    with pytest.raises(NoIsolationAvailable) as raised:
        ensure_isolation("auto")
    assert str(raised.value) == ("no isolating sandbox backend works on this machine (bwrap is not installed): "
                                 "install bubblewrap (`apt-get install bubblewrap`), or run without isolation "
                                 "with --dangerously-no-sandbox")


@pytest.mark.parametrize("kind", BACKENDS)
def test_workspace_is_seen_at_root_and_host_path_maps_there(make_sandbox, kind):
    sb = make_sandbox(kind)
    result = sb.execute("pwd && cat app.py", timeout=10)
    assert result.output.splitlines() == [sb.root, "print('hello')"]
    assert sb.host_path(f"{sb.root}/app.py") == Path(os.path.realpath(sb.workspace.path)) / "app.py"
    if kind == "bwrap":
        assert sb.root == "/repo"
        assert str(sb.workspace.path) not in result.output


def test_bwrap_files_written_by_editor_belong_to_the_sandbox_user(make_sandbox):
    sb = make_sandbox("bwrap")
    sb.write_file("/repo/new.txt", b"hi\n")
    if os.geteuid() == 0:
        assert (sb.workspace.path / "new.txt").stat().st_uid == sb.policy.run_as_uid
        assert (sb.workspace.path / ".git/config").stat().st_uid == 0
    assert sb.execute("id -u", timeout=10).output.strip() == str(sb.policy.inside_uid)


def test_local_backend_runs_commands_and_reports_no_isolation(make_sandbox):
    sb = make_sandbox("local", ResourceLimits())
    assert sb.execute("echo hi", timeout=10).output == "hi\n"
    assert sb.self_check()["isolated"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root here")
def test_leftovers_of_a_dead_orchestrator_are_reaped(tmp_path):
    import tempfile

    from sandbox.bwrap import reap_stale_stages
    from sandbox.cgroups import reap_stale_cgroups
    dead = subprocess.Popen(["true"])
    dead.wait()
    stage = Path(tempfile.gettempdir()) / f"nightowl-stage-{dead.pid}-test"
    (stage / "0").mkdir(parents=True)
    listing = Path(tempfile.gettempdir()) / f"nightowl-alternates-{dead.pid}-test"
    listing.write_text("/objects/0\n")
    mine = Path(tempfile.gettempdir()) / f"nightowl-alternates-{os.getpid()}-test"
    mine.write_text("/objects/0\n")
    cg = RunCgroup(memory_mb=64, max_processes=8, name=f"nightowl-{dead.pid}-test")
    live = RunCgroup(memory_mb=64, max_processes=8)
    try:
        reap_stale_stages()
        reap_stale_cgroups()
        assert not stage.exists() and not listing.exists()
        assert mine.exists()  # a live orchestrator's listing stays
        assert cg.dirs and not any(d.exists() for d in cg.dirs)
        assert all(d.exists() for d in live.dirs)
    finally:
        mine.unlink(missing_ok=True)
        live.close()
        cg.close()
