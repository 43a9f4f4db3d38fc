"""The sandbox self-check: every protection a trajectory records is measured from inside the sandbox.

One probe script runs through the backend's own `execute` path. It reports what it sees (uid and uid map,
capabilities, processes, root directory entries, cgroup limits, rlimits, interpreters) and tries what must
fail (reading a canary file planted next to the workspace and the host's secret paths, seeing a canary
variable put in the launcher's environment, connecting to a listener on the host's loopback and to an
outside address, writing a sysctl, creating a user namespace). Nothing here is taken from configuration.
"""
from __future__ import annotations

import os
import secrets
import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.base import CommandResult
from sandbox.environment import is_secret_name

CANARY_VARIABLE = "NIGHTOWL_CANARY_SECRET_TOKEN"
INTERPRETERS = ("python3", "python", "pip", "node", "npm", "ruby", "go", "cargo", "rustc", "java", "gcc", "make")
PROBE = r"""
echo "uid=$(id -u)"
: > "$UID_PROBE" 2>/dev/null
grep -E '^(NoNewPrivs|CapEff|CapPrm):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "pids=$(ls /proc | grep -c '^[0-9]')"
echo "root=$(ls -A / | tr '\n' ,)"
for p in "$@"; do  # a file that is there (not the /dev/null put over it), a directory with anything in it
  if [ -d "$p" ]; then [ -n "$(ls -A "$p" 2>/dev/null)" ] && echo "visible=$p"
  elif [ -e "$p" ] && [ ! -c "$p" ]; then echo "visible=$p"; fi
done
echo "canary_env=$(env | grep -c "^$CANARY_VAR=")"
(exec 3<>/dev/tcp/127.0.0.1/$LOOPBACK_PORT) 2>/dev/null && echo "loopback=connected" || echo "loopback=refused"
if command -v timeout >/dev/null; then
  timeout 3 bash -c 'exec 3<>/dev/tcp/1.1.1.1/53' 2>/dev/null && echo "outside=connected" || echo "outside=refused"
fi
v=$(cat /proc/sys/kernel/panic)  # written back unchanged: a no-op where the write is allowed
(echo "$v" > /proc/sys/kernel/panic) 2>/dev/null && echo "sysctl=writable" || echo "sysctl=readonly"
if command -v unshare >/dev/null; then
  (unshare -U true) 2>/dev/null && echo "userns=allowed" || echo "userns=blocked"
fi
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
  [ -r "$f" ] && echo "cg_memory=$(cat "$f")" && break; done
for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max; do
  [ -r "$f" ] && echo "cg_pids=$(cat "$f")" && break; done
for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/memory/cgroup.procs; do
  [ -r "$f" ] && { grep -qx "$$" "$f" && echo "cg_member=yes" || echo "cg_member=no"; } && break; done
echo "ulimit_cpu=$(ulimit -t)"; echo "ulimit_fsize=$(ulimit -f)"; echo "ulimit_nofile=$(ulimit -n)"
echo "ulimit_as=$(ulimit -v)"; echo "ulimit_nproc=$(ulimit -u)"
echo "tmp_kb=$(df -k /tmp 2>/dev/null | awk 'NR==2 {print $2}')"
for t in $INTERPRETERS; do p=$(command -v "$t") && echo "interp_$t=$p"; done
command -v python3 >/dev/null && echo "python3_version=$(python3 --version 2>&1)"
printf 'protected='
for p in $PROTECTED; do
  [ -e "$p" ] && { [ -w "$p" ] && printf '%s:writable,' "$p" || printf '%s:readonly,' "$p"; }; done; echo
echo __ENV__
env
"""


def limit_mb(value: str | None, unit_bytes: int) -> int | None:
    """A limit read inside ('max'/'unlimited' or a number of `unit_bytes` units) in MiB, None if unlimited."""
    if value is None or not value.strip().isdigit():
        return None
    mb = int(value) * unit_bytes // (1024 * 1024)
    return None if mb >= 2 ** 40 else mb


def parse(output: str) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """key=value lines before `env`, the `visible=` paths, and the environment the probe printed."""
    fields: dict[str, str] = {}
    visible: list[str] = []
    env: dict[str, str] = {}
    head, _, env_text = output.partition("\n__ENV__\n")
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if key == "visible":
            visible.append(value)
        elif sep:
            fields.setdefault(key, value)
    for line in env_text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env.setdefault(key, value)
    return fields, visible, env


def self_check(execute: Callable[[str, dict[str, str]], CommandResult], *, backend: str, root: str,
               workspace: Path, secret_paths: list[str], protected: list[str]) -> dict[str, Any]:
    """Run the probe through `execute(command, launcher_env)` and report what it measured."""
    canary_dir = workspace.parent
    canary = canary_dir / f".nightowl-canary-{secrets.token_hex(6)}"
    canary.write_text("canary\n")
    token = secrets.token_hex(12)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    paths = [str(canary), *(p for p in secret_paths if os.path.lexists(p))]
    probe_name = f".git/nightowl-uid-probe-{token[:8]}"
    uid_probe = workspace / probe_name
    command = (f"UID_PROBE={shlex.quote(f'{root}/{probe_name}')} LOOPBACK_PORT={port} CANARY_VAR={CANARY_VARIABLE} "
               f"INTERPRETERS={shlex.quote(' '.join(INTERPRETERS))} "
               f"PROTECTED={shlex.quote(' '.join(f'{root}/{p}' for p in protected))} "
               f"bash -c {shlex.quote(PROBE)} probe {' '.join(shlex.quote(p) for p in paths)}")
    try:
        result = execute(command, {CANARY_VARIABLE: token})
        try:
            listener.accept()
            loopback_reached = True
        except BlockingIOError:
            loopback_reached = False
        uid_outside = str(uid_probe.stat().st_uid) if uid_probe.exists() else "?"
    finally:
        listener.close()
        canary.unlink(missing_ok=True)
        uid_probe.unlink(missing_ok=True)
    check = report(result, backend, canary=str(canary), token=token, loopback_reached=loopback_reached)
    check["uid_outside"] = uid_outside  # the owner of a file the probe created, as the host sees it
    check["privileges_dropped"] = uid_outside not in ("0", "?")
    return check


def report(result: CommandResult, backend: str, *, canary: str, token: str, loopback_reached: bool) -> dict[str, Any]:
    f, visible, env = parse(result.output)
    leaked_values = [name for name, value in os.environ.items()
                     if is_secret_name(name) and len(value) >= 6 and value in env.values()]
    secret_env_leaked = f.get("canary_env", "1") != "0" or token in result.output or bool(leaked_values)
    cap_eff, cap_prm = f.get("CapEff"), f.get("CapPrm")
    memory_mb = limit_mb(f.get("cg_memory"), 1)
    as_mb = limit_mb(f.get("ulimit_as"), 1024)
    pids = f.get("cg_pids")
    check: dict[str, Any] = {
        "backend": backend,
        "probe_exit_code": result.returncode,
        "uid_inside": f.get("uid", "?"),
        "no_new_privs": f.get("NoNewPrivs") == "1",
        "capabilities_dropped": cap_eff is not None and int(cap_eff, 16) == 0 and int(cap_prm or "0", 16) == 0,
        "pid_namespace": f.get("pids", "").isdigit() and int(f["pids"]) <= 5,
        "network_blocked": f.get("loopback") == "refused" and not loopback_reached
                           and f.get("outside", "refused") == "refused",
        "proc_sys_readonly": f.get("sysctl") == "readonly",
        "nested_userns_blocked": {"blocked": True, "allowed": False}.get(f.get("userns", ""), "unknown"),
        "canary_file_visible": canary in visible,
        "secret_paths_visible": sorted(p for p in visible if p != canary),
        "secret_env_visible": secret_env_leaked,
        "root_entries": sorted(e for e in f.get("root", "").split(",") if e),
        "memory_limit_mb": memory_mb if memory_mb is not None else as_mb,
        "memory_limit_source": "cgroup" if memory_mb is not None else "rlimit-as" if as_mb is not None else "none",
        "pids_limit": int(pids) if pids and pids.isdigit() else None,
        "in_run_cgroup": f.get("cg_member") == "yes",
        "cpu_seconds": int(f["ulimit_cpu"]) if f.get("ulimit_cpu", "").isdigit() else None,
        "file_size_mb": limit_mb(f.get("ulimit_fsize"), 1024),
        "open_files": int(f["ulimit_nofile"]) if f.get("ulimit_nofile", "").isdigit() else None,
        "tmp_mb": int(f["tmp_kb"]) // 1024 if f.get("tmp_kb", "").isdigit() else None,
        "protected_paths": f.get("protected", "").rstrip(","),
        "interpreters": {k.removeprefix("interp_"): v for k, v in f.items() if k.startswith("interp_")},
        "python3_version": f.get("python3_version", ""),
    }
    check["secrets_hidden"] = not (check["canary_file_visible"] or check["secret_paths_visible"] or secret_env_leaked)
    check["isolated"] = all(check[k] is True for k in (
        "secrets_hidden", "network_blocked", "capabilities_dropped", "no_new_privs", "pid_namespace",
        "proc_sys_readonly")) and result.returncode == 0
    return check
