"""Format versions of the JSON and JSONL files nightowl writes, and the one check every reader makes.

The convention (orchestrator/layout.py lists every file): a top-level field `"format": "nightowl.<kind>/<N>"`, once
per JSON file and on every line of a JSONL file. N grows when a change would mislead an older reader. A file or
line without the field was written before versions existed and reads as version 1; a newer N is refused in one
line that says to upgrade.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from sandbox.errors import UserError

FIELD = "format"


class FileFormatError(UserError, ValueError):
    """A file this nightowl cannot read: another kind of file, or one written by a newer nightowl."""


class NewerFormatError(FileFormatError):
    """Written by a newer nightowl: only upgrading helps."""


class FileFormat(NamedTuple):
    kind: str
    """trajectory, eval, rounds, ...: the `<kind>` in `nightowl.<kind>/<N>`."""
    version: int
    """The version this nightowl writes, and the newest it reads."""

    @property
    def tag(self) -> str:
        return f"nightowl.{self.kind}/{self.version}"

    def stamp(self, data: dict[str, Any]) -> dict[str, Any]:
        """The object with its format field first."""
        return {FIELD: self.tag, **{k: v for k, v in data.items() if k != FIELD}}

    def version_of(self, data: Any, path: Path | str) -> int:
        """The version `data` (a file's object or a JSONL line) was written in; a newer one is refused."""
        tag = data.get(FIELD) if isinstance(data, dict) else None
        if tag is None:
            return 1
        name, _, number = str(tag).rpartition("/")
        if name != f"nightowl.{self.kind}" or not number.isdigit() or int(number) < 1:
            raise FileFormatError(f"{path} is not a nightowl {self.kind} file (its format is {tag!r}, "
                                  f"this nightowl reads {self.tag})")
        found = int(number)
        if found > self.version:
            raise NewerFormatError(f"{path} was written by a newer nightowl (format {found}, this one reads up to "
                                  f"{self.version}): upgrade nightowl")
        return found

    def dumps(self, data: dict[str, Any], **json_options: Any) -> str:
        """The object stamped with this format, as JSON (one JSONL line has no indent and no newline)."""
        return json.dumps(self.stamp(data), **json_options)

    def load(self, path: Path) -> Any:
        """A JSON file of this kind, its version checked."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.version_of(data, path)
        return data

    def load_lines(self, path: Path) -> list[Any]:
        """The lines of a JSONL file of this kind, each line's version checked."""
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        for row in rows:
            self.version_of(row, path)
        return rows
