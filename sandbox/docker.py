"""Opt-in backend for users with a Docker engine: one container per run, commands via `docker exec`.

The container has no network, no capabilities, no-new-privileges, a read-only root, tmpfs /tmp, memory,
pids, CPU-time and file-size limits, and runs as an unprivileged uid; the workspace is mounted at /repo with
its git hooks/config read-only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from sandbox.base import CommandResult, SandboxError
from sandbox.environment import sandbox_environment
from sandbox.files import WorkspaceBackedFiles, WorkspaceFiles
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.process import run_process
from sandbox.workspace import Workspace

REPO = "/repo"
DEFAULT_IMAGE = os.environ.get("NIGHTOWL_DOCKER_IMAGE", "debian:bookworm-slim")


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _docker(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise SandboxError(f"docker {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


class DockerSandbox(WorkspaceBackedFiles):
    name = "docker"
    root = REPO

    def __init__(self, workspace: Workspace, limits: ResourceLimits | None = None, policy: Policy | None = None,
                 image: str = DEFAULT_IMAGE):
        if not docker_available():
            raise SandboxError("no Docker engine is reachable (`docker info` fails)")
        policy = policy or Policy()
        if limits is not None:
            policy = policy.model_copy(update={"limits": limits})
        self.policy, self.workspace = policy, workspace
        self.host_root = Path(os.path.realpath(workspace.path))
        uid, gid = (policy.run_as_uid, policy.run_as_gid) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        if os.geteuid() == 0:
            for dirpath, _, filenames in os.walk(self.host_root):
                os.lchown(dirpath, uid, gid)
                for name in filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)
        self.files = WorkspaceFiles(self.host_root, REPO, protected=tuple(policy.protected_paths),
                                    owner=(uid, gid) if os.geteuid() == 0 else None)
        lim = policy.limits
        args = ["run", "-d", "--name", f"nightowl-{uuid.uuid4().hex[:12]}", "--init",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only",
                "--user", f"{uid}:{gid}", "--workdir", REPO, "--ipc", "private",
                "--tmpfs", f"/tmp:rw,nosuid,size={policy.tmp_size_mb}m", "--shm-size", f"{policy.shm_size_mb}m",
                "--ulimit", "core=0", "--ulimit", f"nofile={lim.open_files}",
                "-v", f"{self.host_root}:{REPO}:rw"]
        if not policy.network:
            args += ["--network", "none"]
        if lim.memory_mb:
            args += ["--memory", f"{lim.memory_mb}m", "--memory-swap", f"{lim.memory_mb}m"]
        if lim.max_processes:
            args += ["--pids-limit", str(lim.max_processes)]
        if lim.cpu_seconds:
            args += ["--ulimit", f"cpu={lim.cpu_seconds}"]
        if lim.file_size_mb:
            size = lim.file_size_mb * 1024 * 1024
            args += ["--ulimit", f"fsize={size}:{size}"]
        for rel in policy.protected_paths:
            if (self.host_root / rel).exists():
                args += ["-v", f"{self.host_root / rel}:{REPO}/{rel}:ro"]
        alternates = self.host_root / ".git/objects/info/alternates"
        if alternates.exists():
            for line in alternates.read_text().split():
                if os.path.isdir(line):
                    args += ["-v", f"{line}:{line}:ro"]
        self.env = sandbox_environment(home="/tmp", allow=policy.env_allow)
        self.env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"})
        self.container = _docker(*args, image, "sleep", "infinity").strip()

    def execute(self, command: str, timeout: float) -> CommandResult:
        env_args = [a for k, v in self.env.items() for a in ("-e", f"{k}={v}")]
        return run_process(["docker", "exec", *env_args, self.container, "bash", "-c", command], cwd="/",
                           env=dict(os.environ), timeout=timeout, sweep=self._sweep)

    def _sweep(self) -> None:
        # Killing the `docker exec` client leaves its process running in the container: kill all but init.
        subprocess.run(["docker", "exec", self.container, "kill", "-9", "-1"], capture_output=True, timeout=30)

    def self_check(self) -> dict[str, bool | str]:
        return {"backend": self.name, "isolated": True, "network_blocked": not self.policy.network,
                "capabilities_dropped": True, "read_only_root": True, "memory_limit": "cgroup",
                "pids_limit": "cgroup", "container": self.container[:12]}

    def close(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)
