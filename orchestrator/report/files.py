"""Reading what runs left behind without trusting it: bytes may not be UTF-8, JSON may be torn or missing.

One thing is not tolerated: a file (or line) written by a newer nightowl is refused (agent/file_format.py), since
guessing at a format this nightowl does not know would show wrong numbers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.file_format import FileFormat


def read_text(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 become U+FFFD instead of failing the report."""
    return path.read_bytes().decode("utf-8", errors="replace")


def read_json(path: Path, file_format: FileFormat | None = None) -> Any:
    data = json.loads(read_text(path))
    if file_format is not None:
        file_format.version_of(data, path)
    return data


def read_jsonl(path: Path, file_format: FileFormat | None = None) -> tuple[list[dict[str, Any]], int]:
    """The objects of a JSONL file and how many lines could not be read as one."""
    rows, bad = [], 0
    for line in read_text(path).splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(value, dict):
            if file_format is not None:
                file_format.version_of(value, path)
            rows.append(value)
        else:
            bad += 1
    return rows, bad


def resolve(base: Path, value: str | None) -> Path | None:
    """A path recorded in a file, taken relative to the directory that holds the file."""
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path
