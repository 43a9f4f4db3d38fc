"""`str_replace_editor`: view, create and edit files in the workspace, with SWE-agent's output shapes.

`view` never shows raw control bytes: a binary file (a NUL byte early on, or mostly control bytes) is a one-line
description with its size and a guess of its type, and a control character in a text file is escaped (`\\x1b`).

Runs host-side through the sandbox's confined file access, so a path (or symlink) that leaves the
repository, a FIFO or device, or a huge file is refused before anything is read or written. Files keep
their bytes: a file that is not UTF-8 is edited as latin-1 (one character per byte) and written back in
it, CRLF files keep CRLF, tabs stay tabs, and every byte outside the edited span is unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.tools.output import describe_binary, escape_controls, fit_lines, looks_binary
from agent.tools.specs import EditorArgs
from sandbox.base import RefusedPath, Sandbox
from sandbox.errors import NightowlError

SNIPPET_LINES = 4
DEFAULT_VIEW_CAP = 16000
CLIPPED_FILE_NOTE = ("<response clipped><NOTE>To save on context only lines {first}-{last} of the {total} lines "
                     "shown here were included. To see more, call `view` again with `view_range` "
                     "[{next}, {next_end}] (or search with `grep -n` first to find the lines you need).</NOTE>\n")
BINARY_FILE = ("{path} is a binary file ({description}); `view` shows text files only. Look inside it with bash, "
               "e.g. `od -c {path} | head`.")
LONG_LINE_NOTE = ("<response clipped><NOTE>Line {line} alone is longer than this view can show ({length} "
                  "characters); read it with bash, e.g. `sed -n '{line}p' {path} | cut -c1-2000`.</NOTE>\n")


class ToolError(NightowlError):
    """A mistake in the call; its message is the observation the model gets."""


@dataclass(frozen=True)
class Decoded:
    text: str
    """The file as text; CRLF line ends shown as "\\n" when every line ends in CRLF."""
    encoding: str
    crlf: bool

    def encode(self, text: str, path: str) -> bytes:
        if self.crlf:
            text = text.replace("\n", "\r\n")
        try:
            return text.encode(self.encoding)
        except UnicodeEncodeError as e:
            bad = text[e.start:e.end]
            raise ToolError(f"No change was made: {path} is not UTF-8 (it is edited as {self.encoding}, one "
                            f"character per byte) and the new text contains {bad!r}, which {self.encoding} cannot "
                            "hold. Use only characters the file's encoding has.") from None

    def normalize(self, text: str) -> str:
        """The model's strings in this file's line-end convention."""
        return text.replace("\r\n", "\n") if self.crlf else text


def decode(data: bytes) -> Decoded:
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    crlf = "\r\n" in text and text.count("\n") == text.count("\r\n")
    return Decoded(text.replace("\r\n", "\n") if crlf else text, encoding, crlf)


def tab_expansion(text: str) -> tuple[str, dict[int, int]]:
    """`text.expandtabs()` and, for each character boundary in it, the matching offset in `text`."""
    pieces: list[str] = []
    raw_at: dict[int, int] = {}
    column = position = 0
    for i, ch in enumerate(text):
        raw_at[position] = i
        if ch == "\t":
            width = 8 - column % 8
            pieces.append(" " * width)
            position, column = position + width, column + width
        else:
            pieces.append(ch)
            position += 1
            column = 0 if ch in "\n\r" else column + 1
    raw_at[position] = len(text)
    return "".join(pieces), raw_at


def find_unique(text: str, old: str) -> tuple[int, int, int]:
    """(occurrences, start, end) of `old` in `text`; where the model copied tabs as the spaces `view` shows
    them as, the match is made on the tab-expanded text and mapped back onto the file's own characters."""
    count = text.count(old)
    if count or "\t" not in text:
        start = text.find(old)
        return count, start, start + len(old)
    expanded, raw_at = tab_expansion(text)
    old_expanded = old.expandtabs()
    count = expanded.count(old_expanded)
    start = expanded.find(old_expanded)
    end = start + len(old_expanded)
    if count == 1 and (start not in raw_at or end not in raw_at):
        return 0, -1, -1  # the match starts or ends inside a tab
    return count, raw_at.get(start, -1), raw_at.get(end, -1)


def shown_line(line: str) -> str:
    """A line as `view` shows it: a CR ending (a CRLF line in a file with mixed line ends) dropped, any other
    control character escaped (`\\x0c`), never passed on raw."""
    return escape_controls(line.removesuffix("\r"))


def numbered(text: str, descriptor: str, first_line: int = 1, cap: int = DEFAULT_VIEW_CAP,
             total_lines: int | None = None) -> str:
    """`cat -n` of `text`, clipped once, on whole lines, to `cap` characters with a note naming the rest."""
    header = f"Here's the result of running `cat -n` on {descriptor}:\n"
    lines = [f"{i + first_line:6}\t{shown_line(line)}" for i, line in enumerate(text.expandtabs().split("\n"))]
    body = "\n".join(lines) + "\n"
    if len(header) + len(body) <= cap:
        return header + body
    total = total_lines or first_line + len(lines) - 1
    note_reserve = len(CLIPPED_FILE_NOTE.format(first=total, last=total, total=total, next=total, next_end=total))
    shown = fit_lines(lines, cap - len(header) - note_reserve)
    if shown == 0:
        path = descriptor.split(" ")[-1]
        note = LONG_LINE_NOTE.format(line=first_line, length=len(lines[0]), path=path)
        return header + lines[0][:max(0, cap - len(header) - len(note) - 1)] + "\n" + note
    last = first_line + shown - 1
    note = CLIPPED_FILE_NOTE.format(first=first_line, last=last, total=total, next=last + 1,
                                    next_end=min(total, last + shown))
    return header + "\n".join(lines[:shown]) + "\n" + note


class Editor:
    def __init__(self, sandbox: Sandbox, view_cap: int = DEFAULT_VIEW_CAP):
        self.sandbox = sandbox
        self.view_cap = view_cap
        self.history: dict[str, list[bytes]] = {}

    def __call__(self, args: EditorArgs) -> str:
        try:
            host = self.resolve(args.path, args.command)
            handler = getattr(self, args.command)
            return handler(args, host)
        except RefusedPath as e:
            raise ToolError(str(e)) from None
        except OSError as e:
            raise ToolError(f"The {args.command} of {args.path} failed: {e.strerror or e}.") from None

    def numbered(self, text: str, descriptor: str, first_line: int = 1, total_lines: int | None = None) -> str:
        return numbered(text, descriptor, first_line, self.view_cap, total_lines)

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

    def read(self, path: str) -> tuple[bytes, Decoded]:
        data = self.sandbox.read_file(path)
        return data, decode(data)

    def write(self, path: str, data: bytes, previous: bytes | None) -> None:
        self.sandbox.write_file(path, data)
        if previous is not None:
            self.history.setdefault(path, []).append(previous)

    def view(self, args: EditorArgs, host: Path) -> str:
        if host.is_dir():
            if args.view_range:
                raise ToolError("The `view_range` parameter is not allowed when `path` points to a directory.")
            listing = "\n".join(directory_listing(host, args.path.rstrip("/") or "/"))
            return (f"Here's the files and directories up to 2 levels deep in {args.path}, "
                    f"excluding hidden items:\n{listing}\n")
        data, decoded = self.read(args.path)
        if looks_binary(data):
            return BINARY_FILE.format(path=args.path, description=describe_binary(len(data), data[:512]))
        descriptor = (args.path if decoded.encoding == "utf-8"
                      else f"{args.path} (not UTF-8, shown as {decoded.encoding})")
        lines = decoded.text.split("\n")
        if not args.view_range:
            return self.numbered(decoded.text, descriptor)
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
        shown = "\n".join(lines[start - 1: len(lines) if end == -1 else end])
        return self.numbered(shown, descriptor, start, total_lines=len(lines) if end == -1 else end)

    def create(self, args: EditorArgs, host: Path) -> str:
        if args.file_text is None:
            raise ToolError("Parameter `file_text` is required for command: create")
        if not host.parent.exists():
            raise ToolError(f"The parent directory {PurePosixPath(args.path).parent} does not exist. "
                            "Please create it first.")
        self.write(args.path, args.file_text.encode("utf-8"), None)
        return f"File created successfully at: {args.path}"

    def str_replace(self, args: EditorArgs, host: Path) -> str:
        if args.old_str is None:
            raise ToolError("Parameter `old_str` is required for command: str_replace")
        data, decoded = self.read(args.path)
        text = decoded.text
        old, new = decoded.normalize(args.old_str), decoded.normalize(args.new_str or "")
        count, start, end = find_unique(text, old)
        if count == 0:
            raise ToolError(f"No replacement was performed, old_str `{args.old_str}` did not appear verbatim "
                            f"in {args.path}.")
        if count > 1:
            lines = [i + 1 for i, line in enumerate(text.split("\n")) if old in line or old in line.expandtabs()]
            raise ToolError(f"No replacement was performed. Multiple occurrences of old_str `{args.old_str}` "
                            f"in lines {lines}. Please ensure it is unique")
        if new == text[start:end]:
            raise ToolError(f"No replacement was performed, old_str `{args.old_str}` is the same as new_str "
                            f"`{args.new_str}`.")
        updated = text[:start] + new + text[end:]
        self.write(args.path, decoded.encode(updated, args.path), data)
        edit_line = text[:start].count("\n")
        first = max(1, edit_line - SNIPPET_LINES)
        last = min(edit_line + SNIPPET_LINES + new.count("\n"), len(updated.splitlines()))
        snippet = "\n".join(updated.split("\n")[first - 1:last])
        return (f"The file {args.path} has been edited. " + self.numbered(snippet, f"a snippet of {args.path}", first)
                + "Review the changes and make sure they are as expected. Edit the file again if necessary.")

    def insert(self, args: EditorArgs, host: Path) -> str:
        if args.insert_line is None:
            raise ToolError("Parameter `insert_line` is required for command: insert")
        if args.new_str is None:
            raise ToolError("Parameter `new_str` is required for command: insert")
        data, decoded = self.read(args.path)
        lines = decoded.text.split("\n")
        at = args.insert_line
        if at < 0 or at > len(lines):
            raise ToolError(f"Invalid `insert_line` parameter: {at}. It should be within the range of lines "
                            f"of the file: {[0, len(lines)]}")
        new_lines = decoded.normalize(args.new_str).split("\n")
        updated = "\n".join(lines[:at] + new_lines + lines[at:])
        self.write(args.path, decoded.encode(updated, args.path), data)
        snippet = "\n".join(lines[max(0, at - SNIPPET_LINES):at] + new_lines + lines[at:at + SNIPPET_LINES])
        return (f"The file {args.path} has been edited. "
                + self.numbered(snippet, "a snippet of the edited file", max(1, at - SNIPPET_LINES + 1))
                + "Review the changes and make sure they are as expected (correct indentation, no duplicate "
                  "lines, etc). Edit the file again if necessary.")

    def undo_edit(self, args: EditorArgs, host: Path) -> str:
        previous = self.history.get(args.path)
        if not previous:
            raise ToolError(f"No edit history found for {args.path}.")
        data = previous.pop()
        self.sandbox.write_file(args.path, data)
        return f"Last edit to {args.path} undone successfully. {self.numbered(decode(data).text, args.path)}"


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


__all__ = ["Editor", "ToolError", "decode", "directory_listing", "numbered"]
