"""Per-command resource limits, applied with rlimits in the child before exec."""
from __future__ import annotations

import resource

from pydantic import BaseModel, Field


class ResourceLimits(BaseModel):
    cpu_seconds: int | None = Field(default=600, gt=0)
    """CPU time per command; the kernel sends SIGXCPU/SIGKILL past it."""
    memory_mb: int | None = Field(default=4096, gt=0)
    """Address-space cap per process when no memory cgroup is available (cgroups enforce it better)."""
    max_processes: int | None = Field(default=512, gt=0)
    """Process cap (RLIMIT_NPROC for unprivileged uids; the pids cgroup otherwise)."""
    file_size_mb: int | None = Field(default=1024, gt=0)
    """Largest file a command may write."""
    open_files: int = Field(default=1024, gt=0)


def apply_rlimits(limits: ResourceLimits, *, address_space: bool = True, nproc: bool = True) -> None:
    """Runs in the forked child (preexec); must not allocate much or take locks.

    Pass `address_space=False` / `nproc=False` when a memory / pids cgroup enforces those limits instead.
    """
    def cap(kind: int, value: int) -> None:
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))

    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, limits.open_files)
    if limits.cpu_seconds:
        cap(resource.RLIMIT_CPU, limits.cpu_seconds)
    if limits.file_size_mb:
        cap(resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024)
    if limits.memory_mb and address_space:
        cap(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    if limits.max_processes and nproc:
        cap(resource.RLIMIT_NPROC, limits.max_processes)
