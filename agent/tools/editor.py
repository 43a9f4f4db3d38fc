"""`str_replace_editor`: view, create and edit files in the workspace, with SWE-agent's output shapes.

Runs host-side through the sandbox's confined file access, so a path (or symlink) that leaves the
repository is refused before anything is read or written.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from agent.tools.output import clip_middle
from agent.tools.specs import EditorArgs
from sandbox.base import PathOutsideWorkspace, ProtectedPath, Sandbox

SNIPPET_LINES = 4
FILE_VIEW_CAP = 16000
CLIPPED_FILE_NOTE = ("<response clipped><NOTE>To save on context only part of this file has been shown to you. "
                     "You should retry this tool after you have searched inside the file with `grep -n` in order "
                     "to find the line numbers of what you are looking for.</NOTE>")


class ToolError(Exception):
    """A mistake in the call; its message is the observation the model gets."""


def numbered(text: str, descriptor: str, first_line: int = 1) -> str:
    if len(text) > FILE_VIEW_CAP:
        text = text[:FILE_VIEW_CAP] + CLIPPED_FILE_NOTE
    text = text.expandtabs()
    lines = "\n".join(f"{i + first_line:6}\t{line}" for i, line in enumerate(text.split("\n")))
    return f"Here's the result of running `cat -n` on {descriptor}:\n{lines}\n"


class Editor:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.history: dict[str, list[str]] = {}

    def __call__(self, args: EditorArgs) -> str:
        try:
            host = self.resolve(args.path, args.command)
            handler = getattr(self, args.command)
            return handler(args, host)
        except (PathOutsideWorkspace, ProtectedPath) as e:
            raise ToolError(str(e)) from None

    def resolve(self, path: str, command: str) -> Path:
        if not PurePosixPath(path).is_absolute():
            suggestion = PurePosixPath(self.sandbox.root) / path
            raise ToolError(f"The path {path} is not an absolute path, it should start with `/`. "
                            f"Maybe you meant {suggestion}?")
        host = self.sandbox.host_path(path)
        if not host.exists() and command != "create":
            raise ToolError(f"The path {path} does not exist. Please provide a valid path.")
        if host.exists() and command == "create":
            raise ToolError(f"File already exists at: {path}. Cannot overwrite files using command `create`.")
        if host.is_dir() and command != "view":
            raise ToolError(f"The path {path} is a directory and only the `view` command can be used on directories")
        return host

    def read(self, path: str) -> str:
        data = self.sandbox.read_file(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def write(self, path: str, text: str) -> None:
        self.sandbox.write_file(path, text.encode("utf-8"))

    def view(self, args: EditorArgs, host: Path) -> str:
        if host.is_dir():
            if args.view_range:
                raise ToolError("The `view_range` parameter is not allowed when `path` points to a directory.")
            listing = "\n".join(directory_listing(host, args.path.rstrip("/") or "/"))
            return (f"Here's the files and directories up to 2 levels deep in {args.path}, "
                    f"excluding hidden items:\n{listing}\n")
        text = self.read(args.path)
        first = 1
        if args.view_range:
            lines = text.split("\n")
            if len(args.view_range) != 2:
                raise ToolError("Invalid `view_range`. It should be a list of two integers.")
            start, end = args.view_range
            if start < 1 or start > len(lines):
                raise ToolError(f"Invalid `view_range`: {args.view_range}. Its first element `{start}` should be "
                                f"within the range of lines of the file: {[1, len(lines)]}")
            if end > len(lines):
                raise ToolError(f"Invalid `view_range`: {args.view_range}. Its second element `{end}` should be "
                                f"smaller than the number of lines in the file: `{len(lines)}`")
            if end != -1 and end < start:
                raise ToolError(f"Invalid `view_range`: {args.view_range}. Its second element `{end}` should be "
                                f"larger or equal than its first `{start}`")
            text = "\n".join(lines[start - 1: len(lines) if end == -1 else end])
            first = start
        return numbered(text, args.path, first)

    def create(self, args: EditorArgs, host: Path) -> str:
        if args.file_text is None:
            raise ToolError("Parameter `file_text` is required for command: create")
        if not host.parent.exists():
            raise ToolError(f"The parent directory {PurePosixPath(args.path).parent} does not exist. "
                            "Please create it first.")
        self.write(args.path, args.file_text)
        self.history.setdefault(args.path, []).append(args.file_text)
        return f"File created successfully at: {args.path}"

    def str_replace(self, args: EditorArgs, host: Path) -> str:
        if args.old_str is None:
            raise ToolError("Parameter `old_str` is required for command: str_replace")
        text = self.read(args.path).expandtabs()
        old, new = args.old_str.expandtabs(), (args.new_str or "").expandtabs()
        count = text.count(old)
        if count == 0:
            raise ToolError(f"No replacement was performed, old_str `{args.old_str}` did not appear verbatim "
                            f"in {args.path}.")
        if count > 1:
            lines = [i + 1 for i, line in enumerate(text.split("\n")) if old in line]
            raise ToolError(f"No replacement was performed. Multiple occurrences of old_str `{args.old_str}` "
                            f"in lines {lines}. Please ensure it is unique")
        if new == old:
            raise ToolError(f"No replacement was performed, old_str `{args.old_str}` is the same as new_str "
                            f"`{args.new_str}`.")
        updated = text.replace(old, new)
        self.write(args.path, updated)
        self.history.setdefault(args.path, []).append(text)
        edit_line = text.split(old)[0].count("\n")
        start = max(1, edit_line - SNIPPET_LINES)
        end = min(edit_line + SNIPPET_LINES + new.count("\n"), len(updated.splitlines()))
        snippet = "\n".join(updated.split("\n")[start - 1:end])
        return (f"The file {args.path} has been edited. " + numbered(snippet, f"a snippet of {args.path}", start)
                + "Review the changes and make sure they are as expected. Edit the file again if necessary.")

    def insert(self, args: EditorArgs, host: Path) -> str:
        if args.insert_line is None:
            raise ToolError("Parameter `insert_line` is required for command: insert")
        if args.new_str is None:
            raise ToolError("Parameter `new_str` is required for command: insert")
        text = self.read(args.path).expandtabs()
        lines = text.split("\n")
        at = args.insert_line
        if at < 0 or at > len(lines):
            raise ToolError(f"Invalid `insert_line` parameter: {at}. It should be within the range of lines "
                            f"of the file: {[0, len(lines)]}")
        new_lines = args.new_str.expandtabs().split("\n")
        self.write(args.path, "\n".join(lines[:at] + new_lines + lines[at:]))
        self.history.setdefault(args.path, []).append(text)
        snippet = "\n".join(lines[max(0, at - SNIPPET_LINES):at] + new_lines + lines[at:at + SNIPPET_LINES])
        return (f"The file {args.path} has been edited. "
                + numbered(snippet, "a snippet of the edited file", max(1, at - SNIPPET_LINES + 1))
                + "Review the changes and make sure they are as expected (correct indentation, no duplicate "
                  "lines, etc). Edit the file again if necessary.")

    def undo_edit(self, args: EditorArgs, host: Path) -> str:
        previous = self.history.get(args.path)
        if not previous:
            raise ToolError(f"No edit history found for {args.path}.")
        text = previous.pop()
        self.write(args.path, text)
        return f"Last edit to {args.path} undone successfully. {numbered(text, args.path)}"


def directory_listing(host: Path, shown: str, depth: int = 2) -> list[str]:
    """Like `find DIR -maxdepth 2 -not -path '*/.*'`, sorted, never following symlinks."""
    out = [shown]

    def walk(directory: Path, prefix: str, level: int) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            out.append(f"{prefix}/{entry.name}")
            if level < depth and entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), f"{prefix}/{entry.name}", level + 1)

    walk(host, shown.rstrip("/"), 1)
    return out


__all__ = ["Editor", "ToolError", "clip_middle", "directory_listing"]
