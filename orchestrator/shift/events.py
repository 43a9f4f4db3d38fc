"""The JSONL event log (OUT/events.jsonl): one object per line, appended and flushed as things happen."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.layout import event_line


class EventLog:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.listeners: list[Any] = []

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        line = event_line(record)
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()
        for listener in self.listeners:
            listener(record)

    def close(self) -> None:
        with self.lock:
            self.file.close()
