"""The default backend: every command runs in a fresh bubblewrap sandbox.

Only the host's system directories read-only (`Policy.system_paths`: /usr, /etc without its secrets, /opt,
the library and binary links) plus declared toolchain and environment mounts, the workspace read-write at
`/repo`, its git hooks/config read-only, the run's cgroup read-only at /sys/fs/cgroup, no network, own
pid/ipc/uts/user namespaces, no capabilities, no nested user namespaces. When the orchestrator is root,
bwrap itself is started as an unprivileged uid (bwrap run as real root keeps every capability). Memory and
process count are capped by one cgroup per run; CPU and file size by rlimits.
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
from typing import Any

from sandbox.base import CommandResult, SandboxError
from sandbox.cgroups import ROOT as CGROUP_ROOT
from sandbox.cgroups import RunCgroup, owner_alive, reap_stale_cgroups
from sandbox.environment import sandbox_environment
from sandbox.files import WorkspaceBackedFiles, WorkspaceFiles
from sandbox.limits import ResourceLimits, apply_rlimits
from sandbox.policy import Policy
from sandbox.process import run_process
from sandbox.repo_config import ENV_INSIDE
from sandbox.selfcheck import self_check
from sandbox.shell import ShellSession
from sandbox.shims import make_support_dir
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)
REPO = "/repo"
INSIDE_HOME = "/tmp"
ALWAYS_PROTECTED_DIRS = (".git/hooks", ".git/info")
CONTAINER_DIRS = ("/root", "/home", "/run")
"""Hidden, but they hold declared mounts' parents (/root/.pyenv): the self-check probes the secrets in them."""
OBJECTS_INSIDE = "/.objects"
SUPPORT_INSIDE = "/.nightowl"
"""Read-only: `bin/` holds `python`, `pip` and `pip3` (sandbox/shims.py), on PATH after the declared paths;
`lib/` the shell session's driver."""
SANDBOX_OWN_DIRS = {"dev", "proc", "sys", "tmp"}


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


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


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
    """Remove staging directories (empty mount points only) and alternates listings of orchestrators that
    died without closing."""
    tmp = Path(tempfile.gettempdir())
    for listing in tmp.glob("nightowl-alternates-*"):
        if not owner_alive(listing.name.replace("nightowl-alternates-", "nightowl-", 1)):
            try:
                listing.unlink()
            except OSError:  # another sandbox reaped it first
                pass
    for d in tmp.glob("nightowl-stage-*"):
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
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxError("bwrap is not installed (`apt-get install bubblewrap`)")
        self.bwrap: str = bwrap
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
        self._temp_files: list[str] = []
        self._sessions: list[ShellSession] = []
        env_mounted = any(m.inside == ENV_INSIDE for m in policy.mounts)
        self._support = make_support_dir(env_dir=ENV_INSIDE if env_mounted else None)
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

    def _mounted_roots(self) -> list[str]:
        return [*self.policy.system_paths, *(m.inside for m in self.policy.mounts), *self.policy.writable_paths]

    def _alternates_args(self) -> list[str]:
        """The user repository's object store (the workspace borrows its objects) at a neutral path inside,
        with an alternates file naming that path: no host path, and nothing else of the repository, shows."""
        dirs = self._alternate_object_dirs()
        if not dirs:
            return []
        fd, listing = tempfile.mkstemp(prefix=f"nightowl-alternates-{os.getpid()}-")
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{OBJECTS_INSIDE}/{i}\n" for i in range(len(dirs))))
        os.chmod(listing, 0o644)
        self._temp_files.append(listing)
        args = [a for i, d in enumerate(dirs) for a in ("--ro-bind", self._source(d), f"{OBJECTS_INSIDE}/{i}")]
        return args + ["--ro-bind", self._source(listing), f"{REPO}/.git/objects/info/alternates"]

    def _hidden_args(self) -> list[str]:
        """Secrets inside what is mounted (/etc/shadow, a mounted home's .ssh) are covered up."""
        args: list[str] = []
        hidden_dirs: list[str] = ["/tmp"]
        mounted = self._mounted_roots()
        for raw in self.policy.hidden_paths:
            if not os.path.lexists(raw):
                continue
            path = os.path.realpath(raw)
            if not any(under(path, root) for root in mounted) or any(under(path, d) for d in hidden_dirs):
                continue
            if os.path.isdir(path):
                args += ["--tmpfs", path]
                hidden_dirs.append(path)
            else:
                args += ["--ro-bind", "/dev/null", path]
        return args

    def _root_args(self) -> list[str]:
        """The system paths read-only on bwrap's tmpfs root (made read-only at the end), links kept as links,
        then the declared mounts. Nothing else of the host exists inside."""
        args: list[str] = []
        for path in self.policy.system_paths:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path) and os.stat(path).st_mode & 0o005 == 0o005:  # bwrap runs unprivileged
                args += ["--ro-bind", path, path]
        for mount in self.policy.mounts:
            if not os.path.exists(mount.source):
                raise SandboxError(f"the mount source {mount.source} does not exist")
            args += ["--bind" if mount.writable else "--ro-bind", self._source(mount.source), mount.inside]
        if self.policy.network and os.path.islink("/etc/resolv.conf"):  # e.g. into /run/systemd/resolve
            target = os.path.realpath("/etc/resolv.conf")
            if os.path.exists(target):
                args += ["--ro-bind", self._source(target), target]
        return args

    def _cgroup_args(self) -> list[str]:
        """The run's own cgroup at /sys/fs/cgroup (read-only), as a container sees its limits."""
        cg = self.cgroup
        if cg is None:
            return []
        if cg.version == "v2":
            return ["--ro-bind", self._source(cg.dirs[0]), "/sys/fs/cgroup"]
        args: list[str] = []
        for d in cg.dirs:  # v1: one directory per controller, /sys/fs/cgroup/<controller>/.../<run>
            args += ["--ro-bind", self._source(d), f"/sys/fs/cgroup/{d.relative_to(CGROUP_ROOT).parts[0]}"]
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
        args += self._cgroup_args()
        for path in p.writable_paths:
            args += ["--bind", self._source(path), os.path.realpath(path)]
        repo = self._source(self.host_root)
        args += ["--ro-bind", self._source(self._support), SUPPORT_INSIDE]
        args += ["--bind", repo, REPO]
        for rel in self._protected:
            args += ["--ro-bind", f"{repo}/{rel}", f"{REPO}/{rel}"]
        args += self._alternates_args()  # after the workspace: it covers the workspace's alternates file
        args += ["--remount-ro", "/", "--unshare-all", "--unshare-user", "--disable-userns"]
        if p.network:
            args += ["--share-net"]
        args += ["--uid", str(p.inside_uid), "--gid", str(p.inside_uid), "--hostname", "nightowl",
                 "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--chdir", REPO, "--clearenv"]
        env = sandbox_environment(home=INSIDE_HOME, allow=p.env_allow)
        env["PATH"] = ":".join([*p.path_prepend, f"{SUPPORT_INSIDE}/bin", env["PATH"]])
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

    def execute(self, command: str, timeout: float, launcher_env: dict[str, str] | None = None) -> CommandResult:
        """`launcher_env` is bubblewrap's own environment (cleared inside); the self-check plants a canary there."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        # An open shell session shares the run's cgroup: sweeping it would kill the session. The command's pid
        # namespace still takes everything it started down with it.
        return run_process([*self.argv_prefix, "--", "bash", "-c", command], cwd="/", env=launcher_env or {},
                           timeout=timeout, preexec=self._preexec, sweep=None if self._sessions else self._sweep)

    def open_shell(self) -> ShellSession:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        session = ShellSession([*self.argv_prefix, "--"], cwd="/", env={}, lib=f"{SUPPORT_INSIDE}/lib",
                               preexec=self._preexec, sweep=self._sweep, on_close=self._sessions.remove)
        self._sessions.append(session)
        return session

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

    def self_check(self) -> dict[str, Any]:
        check = self_check(lambda command, env: self.execute(command, timeout=30, launcher_env=env),
                           backend=self.name, root=REPO, workspace=self.host_root,
                           secret_paths=[p for p in self.policy.hidden_paths if p not in CONTAINER_DIRS],
                           protected=list(self._protected))
        check["mounts"] = [m.inside for m in self.policy.mounts]
        expected = {p.strip("/").split("/")[0] for p in (*self.policy.system_paths, *check["mounts"],
                                                        *self.policy.writable_paths, REPO, OBJECTS_INSIDE,
                                                        SUPPORT_INSIDE)}
        check["unexpected_root_entries"] = sorted(set(check["root_entries"]) - expected - SANDBOX_OWN_DIRS)
        check["isolated"] = check["isolated"] and not check["unexpected_root_entries"]
        return check

    def close(self) -> None:
        for session in list(self._sessions):
            session.close()
        shutil.rmtree(self._support, ignore_errors=True)
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)  # only empty mount points: mounts were per-command
            self._stage = None
        for path in self._temp_files:
            if os.path.exists(path):
                os.unlink(path)
        self._closed = True
