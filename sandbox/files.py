"""Host-side access to workspace files for the editor tool, confined to the workspace."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from sandbox.base import PathOutsideWorkspace, ProtectedPath
from sandbox.workspace import Workspace, workspace_diff

PROTECTED_RELATIVE_PATHS = (".git/hooks", ".git/config", ".git/info", ".git/objects/info/alternates")


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

    def read(self, path: str) -> bytes:
        return self.host_path(path).read_bytes()

    def write(self, path: str, data: bytes) -> Path:
        host = self.host_path(path)
        self.check_writable(host)
        tmp = host.with_name(f".{host.name}.nightowl-tmp")
        tmp.write_bytes(data)
        if host.exists():
            os.chmod(tmp, host.stat().st_mode & 0o7777)
        if self.owner is not None:
            os.chown(tmp, *self.owner)
        os.replace(tmp, host)
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
