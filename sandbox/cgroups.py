"""A per-run cgroup that caps memory and process count for every command a sandbox runs.

Tries cgroup v2 (when the memory and pids controllers are delegated to us), then the v1 memory and pids
hierarchies, and otherwise reports what is not enforced so the caller can fall back to rlimits and warn.
Commands join the group in the forked child before exec (`join`), which costs two small writes instead
of creating a fresh cgroup per command.
"""
from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str | None:
    """Our cgroup path in a v1 hierarchy (`controller`) or v2 (`""`), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (controller == "" and controllers == "") or controller in controllers.split(","):
            return path
    return None


def _v2_base() -> Path | None:
    mount = ROOT if (ROOT / "cgroup.controllers").exists() else ROOT / "unified"
    own = _own_path("")
    if own is None or not (mount / "cgroup.controllers").exists():
        return None
    base = mount / own.lstrip("/")
    try:
        available = (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    # The cgroup we create is a child of `base`: it gets what base delegates to its children.
    return base if {"memory", "pids"} <= set(available) and os.access(base, os.W_OK) else None


def _v1_base(controller: str) -> Path | None:
    mount = ROOT / controller
    own = _own_path(controller)
    if own is None or not (mount / "tasks").exists():
        return None
    base = mount / own.lstrip("/")
    return base if os.access(base, os.W_OK) else None


def owner_alive(name: str) -> bool:
    """Names are `nightowl-<pid>-<random>`; unparsable names count as alive (never ours to remove)."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return True
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_cgroups() -> None:
    """Remove empty run cgroups left by orchestrators that died without closing their sandboxes."""
    bases = [b for b in (_v2_base(), _v1_base("memory"), _v1_base("pids")) if b is not None]
    for base in bases:
        for d in base.glob("nightowl-*"):
            if not owner_alive(d.name):
                try:
                    d.rmdir()  # fails (harmlessly) while processes are still inside
                except OSError:
                    pass


class RunCgroup:
    """Memory and pids limits shared by every command of one sandbox run."""

    def __init__(self, memory_mb: int | None, max_processes: int | None, name: str | None = None):
        self.name = name or f"nightowl-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.dirs: list[Path] = []
        self.procs_files: list[str] = []
        self.version = "none"
        self.memory = False
        self.pids = False
        base = _v2_base()
        if base is not None:
            self._create_v2(base, memory_mb, max_processes)
        else:
            self._create_v1(memory_mb, max_processes)
        missing = [what for what, ok in (("memory", self.memory or not memory_mb),
                                         ("pids", self.pids or not max_processes)) if not ok]
        if missing:
            log.warning("cgroup %s limits are not enforceable here; falling back to rlimits (per process, "
                        "and RLIMIT_NPROC does nothing for root)", "/".join(missing))

    def _create_v2(self, base: Path, memory_mb: int | None, max_processes: int | None) -> None:
        d = base / self.name
        d.mkdir()
        self.dirs.append(d)
        self.version = "v2"
        if memory_mb:
            (d / "memory.max").write_text(str(memory_mb * 1024 * 1024))
            (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
            self.memory = True
        if max_processes:
            (d / "pids.max").write_text(str(max_processes))
            self.pids = True
        self.procs_files.append(str(d / "cgroup.procs"))

    def _create_v1(self, memory_mb: int | None, max_processes: int | None) -> None:
        for controller, wanted in (("memory", memory_mb), ("pids", max_processes)):
            if not wanted:
                continue
            base = _v1_base(controller)
            if base is None:
                continue
            d = base / self.name
            try:
                d.mkdir()
                if controller == "memory":
                    (d / "memory.limit_in_bytes").write_text(str(wanted * 1024 * 1024))
                    swap = d / "memory.memsw.limit_in_bytes"
                    if swap.exists():
                        swap.write_text(str(wanted * 1024 * 1024))
                    self.memory = True
                else:
                    (d / "pids.max").write_text(str(wanted))
                    self.pids = True
            except OSError as exc:
                log.warning("cannot set up the v1 %s cgroup: %s", controller, exc)
                try:
                    d.rmdir()
                except OSError:
                    pass
                continue
            self.dirs.append(d)
            self.procs_files.append(str(d / "cgroup.procs"))
            self.version = "v1"

    def join(self) -> None:
        """Move the calling process into the group; runs in the forked child before exec (no logging)."""
        pid = str(os.getpid()).encode()
        for path in self.procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def pids_inside(self) -> set[int]:
        found: set[int] = set()
        for path in self.procs_files:
            try:
                found.update(int(x) for x in Path(path).read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self, attempts: int = 50) -> int:
        """SIGKILL everything in the group until it is empty; returns how many survivors remained (0)."""
        for attempt in range(attempts):
            pids = self.pids_inside()
            if not pids:
                return 0
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            # Usually these are the sandbox's last processes still being torn down: back off from 0.5 ms.
            time.sleep(min(0.0005 * 2 ** attempt, 0.02))
        return len(self.pids_inside())

    def close(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs.clear()
        self.procs_files.clear()
