"""The default backend: every command runs in a fresh bubblewrap sandbox.

Read-only host, the workspace read-write at `/repo`, its git hooks/config read-only, secrets hidden, no
network, own pid/ipc/uts/user namespaces, no capabilities, no nested user namespaces. When the
orchestrator is root, bwrap itself is started as an unprivileged uid (bwrap run as real root keeps every
capability). Memory and process count are capped by one cgroup per run; CPU and file size by rlimits.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbox.base import CommandResult, SandboxError
from sandbox.cgroups import RunCgroup, owner_alive, reap_stale_cgroups
from sandbox.environment import sandbox_environment
from sandbox.files import WorkspaceBackedFiles, WorkspaceFiles
from sandbox.limits import ResourceLimits, apply_rlimits
from sandbox.policy import Policy
from sandbox.process import run_process
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)
REPO = "/repo"
INSIDE_HOME = "/tmp"
ALWAYS_PROTECTED_DIRS = (".git/hooks", ".git/info")


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18


def _checked(rc: int) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def stage_mounts(binds: list[tuple[bytes, bytes]]) -> None:
    """In the forked child, as root: a private mount namespace where `binds` (source, target) are mounted.

    bwrap, run unprivileged, resolves its bind sources with the dropped uid and cannot reach a workspace
    under a 0700 directory; staging it under a traversable directory fixes that without touching the host.
    """
    _checked(_libc.unshare(CLONE_NEWNS))
    _checked(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None))
    for source, target in binds:
        _checked(_libc.mount(source, target, None, MS_BIND | MS_REC, None))


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


@functools.lru_cache(maxsize=4)
def bwrap_works(uid: int = 65534, gid: int = 65534) -> str | None:
    """None when a minimal isolating bwrap starts here (as `uid` when we are root); else why not."""
    path = find_bwrap()
    if path is None:
        return "bwrap is not installed"
    root = os.geteuid() == 0
    try:
        proc = subprocess.run(
            [path, "--ro-bind", "/", "/", "--unshare-all", "--unshare-user", "--disable-userns",
             "--cap-drop", "ALL", "--die-with-parent", "true"],
            capture_output=True, timeout=10, cwd="/", env={},
            preexec_fn=(lambda: drop_privileges(uid, gid)) if root else None)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap failed to start: {exc}"
    if proc.returncode != 0:
        return f"bwrap failed: {proc.stderr.decode(errors='replace').strip()}"
    return None


def reap_stale_stages() -> None:
    """Remove staging directories (empty mount points only) of orchestrators that died without closing."""
    for d in Path(tempfile.gettempdir()).glob("nightowl-stage-*"):
        if owner_alive(d.name.replace("nightowl-stage-", "nightowl-", 1)):
            continue
        # Several sandboxes may open at once after a crash and reap the same directory: losing is fine.
        try:
            for child in d.iterdir():
                try:
                    child.rmdir() if child.is_dir() else child.unlink()
                except OSError:
                    pass
            d.rmdir()
        except OSError:
            pass


def _chown_tree(root: Path, uid: int, gid: int, skip: set[Path]) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        os.lchown(here, uid, gid)
        for name in filenames:
            if here / name not in skip:
                os.lchown(here / name, uid, gid)


class BubblewrapSandbox(WorkspaceBackedFiles):
    name = "bwrap"
    root = REPO

    def __init__(self, workspace: Workspace, limits: ResourceLimits | None = None, policy: Policy | None = None,
                 use_cgroups: bool = True):
        self.bwrap = find_bwrap()
        if self.bwrap is None:
            raise SandboxError("bwrap is not installed (`apt-get install bubblewrap`)")
        policy = policy or Policy()
        if limits is not None:
            policy = policy.model_copy(update={"limits": limits})
        self.policy = policy
        self.workspace = workspace
        self.host_root = Path(os.path.realpath(workspace.path))
        self.privileged = os.geteuid() == 0
        self.uid, self.gid = ((policy.run_as_uid, policy.run_as_gid) if self.privileged
                              else (os.getuid(), os.getgid()))
        for rel in ALWAYS_PROTECTED_DIRS:
            (self.host_root / rel).mkdir(parents=True, exist_ok=True)
        self._protected = [rel for rel in policy.protected_paths if (self.host_root / rel).exists()]
        self._give_workspace_to_sandbox_user()
        self.files = WorkspaceFiles(self.host_root, REPO, protected=tuple(policy.protected_paths),
                                    owner=(self.uid, self.gid) if self.privileged else None)
        self.cgroup: RunCgroup | None = None
        if self.privileged:
            reap_stale_stages()
            reap_stale_cgroups()
        if use_cgroups:
            try:
                self.cgroup = RunCgroup(policy.limits.memory_mb, policy.limits.max_processes)
            except OSError as exc:
                log.warning("no cgroup for this run (%s); memory and process limits fall back to rlimits", exc)
        self._stage: str | None = None
        self._stage_binds: list[tuple[bytes, bytes]] = []
        self._closed = False
        try:
            self.argv_prefix = self._build_argv()
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------------

    def _give_workspace_to_sandbox_user(self) -> None:
        if not self.privileged:
            return
        # Protected paths stay root-owned: even a rename trick inside cannot make them writable.
        _chown_tree(self.host_root, self.uid, self.gid, {self.host_root / rel for rel in self._protected})

    def _source(self, path: str | Path) -> str:
        """Where bwrap finds `path`: staged under a traversable directory when we drop privileges."""
        if not self.privileged:
            return str(path)
        if self._stage is None:
            self._stage = tempfile.mkdtemp(prefix=f"nightowl-stage-{os.getpid()}-")
            os.chmod(self._stage, 0o711)
        target = os.path.join(self._stage, str(len(self._stage_binds)))
        if os.path.isdir(path):
            os.mkdir(target)
        else:
            open(target, "w").close()
        self._stage_binds.append((os.fsencode(path), os.fsencode(target)))
        return target

    def _alternate_object_dirs(self) -> list[str]:
        objects = self.host_root / ".git" / "objects"
        try:
            lines = (objects / "info" / "alternates").read_text().splitlines()
        except OSError:
            return []
        dirs = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line) if os.path.isabs(line) else objects / line
                if p.is_dir():
                    dirs.append(os.path.realpath(p))
        return dirs

    def _hidden_args(self) -> list[str]:
        args: list[str] = []
        hidden_dirs: list[str] = ["/tmp"]
        for raw in self.policy.hidden_paths:
            if not os.path.lexists(raw):
                continue
            path = os.path.realpath(raw)
            if any(path == d or path.startswith(d.rstrip("/") + "/") for d in hidden_dirs):
                continue
            if os.path.isdir(path):
                args += ["--tmpfs", path]
                hidden_dirs.append(path)
            else:
                args += ["--ro-bind", "/dev/null", path]
        return args

    def _root_args(self) -> list[str]:
        """The host's top-level entries read-only on bwrap's tmpfs root, which is then made read-only.

        Binding `/` itself would leave no place to create the `/repo` mount point.
        """
        args: list[str] = []
        for name in sorted(os.listdir("/")):
            path = f"/{name}"
            if name in ("proc", "dev", "tmp", "repo") or path in self.policy.hidden_paths:
                continue
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.stat(path).st_mode & 0o005 == 0o005:  # bwrap (unprivileged) must be able to open it
                args += ["--ro-bind", path, path]
        return args

    def _build_argv(self) -> list[str]:
        p = self.policy
        args = [self.bwrap, *self._root_args(),
                "--dev", "/dev",
                "--proc", "/proc",
                "--ro-bind", "/proc/sys", "/proc/sys",
                "--perms", "1777", "--size", str(p.tmp_size_mb * 1024 * 1024), "--tmpfs", "/tmp",
                "--perms", "1777", "--size", str(p.shm_size_mb * 1024 * 1024), "--tmpfs", "/dev/shm"]
        args += self._hidden_args()
        for path in self._alternate_object_dirs():
            args += ["--ro-bind", self._source(path), path]
        for path in p.writable_paths:
            args += ["--bind", self._source(path), os.path.realpath(path)]
        repo = self._source(self.host_root)
        args += ["--bind", repo, REPO]
        for rel in self._protected:
            args += ["--ro-bind", f"{repo}/{rel}", f"{REPO}/{rel}"]
        args += ["--remount-ro", "/", "--unshare-all", "--unshare-user", "--disable-userns"]
        if p.network:
            args += ["--share-net"]
        args += ["--uid", str(p.inside_uid), "--gid", str(p.inside_uid), "--hostname", "nightowl",
                 "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--chdir", REPO, "--clearenv"]
        env = sandbox_environment(home=INSIDE_HOME, allow=p.env_allow)
        git_config = {"safe.directory": "*", "user.name": "nightowl", "user.email": "nightowl@localhost",
                      "core.pager": "cat"}
        env["GIT_CONFIG_COUNT"] = str(len(git_config))
        for i, (key, value) in enumerate(git_config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        for name, value in env.items():
            args += ["--setenv", name, value]
        return args

    def _preexec(self) -> None:
        if self._stage_binds:
            stage_mounts(self._stage_binds)
        cg = self.cgroup
        if cg is not None:
            cg.join()
        apply_rlimits(self.policy.limits, address_space=not (cg and cg.memory), nproc=not (cg and cg.pids))
        if self.privileged:
            drop_privileges(self.uid, self.gid)

    def _sweep(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill_all()

    # -- Sandbox protocol ----------------------------------------------------------------------------

    def execute(self, command: str, timeout: float) -> CommandResult:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        return run_process([*self.argv_prefix, "--", "bash", "-c", command], cwd="/", env={}, timeout=timeout,
                           preexec=self._preexec, sweep=self._sweep)

    def diff(self) -> bytes:
        patch = super().diff()
        # Host-side `git add` wrote root-owned objects; hand them back so git inside can keep writing.
        if self.privileged:
            _chown_tree(self.host_root / ".git" / "objects", self.uid, self.gid,
                        {self.host_root / rel for rel in self._protected})
            index = self.host_root / ".git" / "index"
            if index.exists():
                os.lchown(index, self.uid, self.gid)
        return patch

    def self_check(self) -> dict[str, bool | str]:
        probe = ("id -u; grep -E '^(NoNewPrivs|CapEff):' /proc/self/status; ls /proc | grep -c '^[0-9]'; "
                 "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,; echo; "
                 "(echo 0 > /proc/sys/kernel/panic) 2>/dev/null && echo sys-writable || echo sys-ro; "
                 "(unshare -U true) 2>/dev/null && echo userns-ok || echo userns-blocked")
        result = self.execute(probe, timeout=20)
        lines = result.output.split("\n")
        info = dict(line.split(":", 1) for line in lines if line.startswith(("NoNewPrivs:", "CapEff:")))
        cg = self.cgroup
        return {
            "backend": self.name,
            "isolated": result.returncode == 0,
            "host_uid": str(self.uid),
            "uid_inside": lines[0].strip() if lines else "?",
            "privileges_dropped": self.uid != 0,
            "no_new_privs": info.get("NoNewPrivs", "").strip() == "1",
            "capabilities_dropped": info.get("CapEff", "").strip().strip("0") == "",
            "pid_namespace": len(lines) > 3 and lines[3].strip().isdigit() and int(lines[3]) <= 5,
            "network_blocked": not self.policy.network and len(lines) > 4 and lines[4].strip(",") in ("", "lo"),
            "proc_sys_readonly": "sys-ro" in result.output,
            "nested_userns_blocked": "userns-blocked" in result.output,
            "secrets_hidden": True,
            "protected_paths": ",".join(self._protected),
            "cgroup": cg.version if cg else "none",
            "memory_limit": f"cgroup-{cg.version}" if cg and cg.memory else "rlimit-address-space",
            "pids_limit": (f"cgroup-{cg.version}" if cg and cg.pids
                           else "rlimit-nproc" if self.uid != 0 else "not-enforced"),
            "cpu_limit": "rlimit", "file_size_limit": "rlimit",
            "tmpfs_mb": f"/tmp={self.policy.tmp_size_mb},/dev/shm={self.policy.shm_size_mb}",
        }

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)  # only empty mount points: mounts were per-command
            self._stage = None
        self._closed = True
