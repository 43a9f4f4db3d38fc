"""Host-side access to workspace files for the editor tool, confined to the workspace."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path, PurePosixPath

from sandbox.base import FileTooLarge, NotARegularFile, PathOutsideWorkspace, ProtectedPath
from sandbox.workspace import Workspace, workspace_diff

PROTECTED_RELATIVE_PATHS = (".git/hooks", ".git/config", ".git/info", ".git/objects/info/alternates")
MAX_READ_BYTES = 8 * 1024 * 1024
"""The most the editor reads into the orchestrator's memory; bigger files are for `grep`/`sed` inside."""
FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink"}


def refuse_unless_regular(mode: int, shown: str) -> None:
    if not stat.S_ISREG(mode):
        kind = FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise NotARegularFile(f"{shown} is {kind}; the editor only reads and writes regular files.")


class WorkspaceFiles:
    """Maps agent-visible paths under `visible_root` to `host_root`, refusing anything that escapes."""

    def __init__(self, host_root: Path, visible_root: str, protected: tuple[str, ...] = PROTECTED_RELATIVE_PATHS,
                 owner: tuple[int, int] | None = None):
        self.host_root = Path(os.path.realpath(host_root))
        self.owner = owner
        """(uid, gid) that written files are given, so the sandboxed user can keep editing them."""
        self.visible_root = visible_root.rstrip("/") or "/"
        self.protected = protected

    def host_path(self, path: str) -> Path:
        p = PurePosixPath(path)
        if p.is_absolute():
            try:
                rel = p.relative_to(self.visible_root)
            except ValueError:
                raise PathOutsideWorkspace(
                    f"The path {path} is outside the repository {self.visible_root}; "
                    f"only files under {self.visible_root} can be viewed or edited.") from None
        else:
            rel = p
        candidate = self.host_root / rel
        # realpath follows every symlink, so a planted link to a host file is caught here.
        resolved = Path(os.path.realpath(candidate))
        if resolved != self.host_root and self.host_root not in resolved.parents:
            raise PathOutsideWorkspace(
                f"The path {path} resolves outside the repository {self.visible_root} "
                f"(through a symlink or '..'); refusing to access it.")
        return resolved

    def visible_path(self, host: Path) -> str:
        rel = Path(os.path.realpath(host)).relative_to(self.host_root)
        return str(PurePosixPath(self.visible_root) / rel) if str(rel) != "." else self.visible_root

    def check_writable(self, host: Path) -> None:
        rel = host.relative_to(self.host_root).as_posix()
        for protected in self.protected:
            if rel == protected or rel.startswith(protected + "/"):
                raise ProtectedPath(f"{self.visible_path(host)} is protected and cannot be modified.")

    def read(self, path: str, limit: int = MAX_READ_BYTES) -> bytes:
        """The file's bytes. Never blocks (a FIFO is refused, not opened for a writer that never comes), never
        follows a symlink swapped in after `host_path`, and never reads more than `limit` bytes."""
        host = self.host_path(path)
        fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            refuse_unless_regular(info.st_mode, path)
            if info.st_size > limit:
                raise FileTooLarge(f"{path} is {info.st_size / 2**20:.1f} MiB; the editor reads files up to "
                                   f"{limit / 2**20:.0f} MiB. Look inside it with bash (grep -n, sed -n 'A,Bp').")
            chunks, size = [], 0
            while size <= limit and (chunk := os.read(fd, 1 << 20)):
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise FileTooLarge(f"{path} grew past {limit / 2**20:.0f} MiB while it was read.")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> Path:
        """Replace the file atomically through a fresh temporary file (created exclusively: a planted link
        or FIFO in its place cannot redirect the write)."""
        host = self.host_path(path)
        self.check_writable(host)
        try:
            mode: int | None = os.lstat(host).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            refuse_unless_regular(mode, path)
        fd, tmp = tempfile.mkstemp(dir=host.parent, prefix=f".{host.name}.", suffix=".nightowl-tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), (mode & 0o7777) if mode is not None else 0o644)
                if self.owner is not None:
                    os.fchown(f.fileno(), *self.owner)
            os.replace(tmp, host)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        return host


class WorkspaceBackedFiles:
    """The file half of the Sandbox protocol, shared by every backend: host-side, confined, plus the diff."""

    files: WorkspaceFiles
    workspace: Workspace

    def host_path(self, path: str) -> Path:
        return self.files.host_path(path)

    def read_file(self, path: str) -> bytes:
        return self.files.read(path)

    def write_file(self, path: str, data: bytes) -> None:
        self.files.write(path, data)

    def diff(self) -> bytes:
        return workspace_diff(self.workspace)
