"""The JSONL event log (OUT/events.jsonl): one object per line, appended and flushed as things happen."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.listeners: list[Any] = []

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(record, default=str)
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()
        for listener in self.listeners:
            listener(record)

    def close(self) -> None:
        with self.lock:
            self.file.close()
