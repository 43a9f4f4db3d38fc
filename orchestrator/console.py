"""Where nightowl's output goes: `out` (stdout: results a script may read), `console` (stderr: progress, warnings,
errors), and the log (`configure_logging`, called once by the command line).

Every module prints through these two consoles rather than building its own, so a change to how output looks (or
where it goes) is made here once.
"""
from __future__ import annotations

import io
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from orchestrator.crash import CRASH_DIR

console = Console(stderr=True)
out = Console()

VERBOSE_FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_directory() -> Path:
    """The crash reports' directory (orchestrator/crash.py): one place to look when something went wrong."""
    return Path(os.environ.get("NIGHTOWL_CRASH_DIR") or CRASH_DIR)


class LazyFileHandler(logging.FileHandler):
    """Creates the log's directory and file only when the first record arrives: most commands log nothing."""
    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError:  # an unwritable log directory must not stop the command; stderr still shows the record
            pass


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when the record arrives (test runners swap it), as Python's own
    last-resort handler does."""
    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


NIGHTOWL_LOGGERS = ("agent", "orchestrator", "sandbox", "training")
_installed: list[logging.Handler] = []


def configure_logging(command: str, verbose: bool = False) -> Path:
    """nightowl's warnings to stderr as bare lines (with `verbose`: its debug records too, with level and logger
    name), and to `<log directory>/<command>-<UTC time>-<pid>.log`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = log_directory() / f"{command}-{stamp}-{os.getpid()}.log"
    stderr = StderrHandler()
    stderr.setFormatter(logging.Formatter(VERBOSE_FORMAT if verbose else "%(message)s"))
    to_file = LazyFileHandler(path, delay=True, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    root = logging.getLogger()
    for handler in _installed:  # a second command in the same process (tests) replaces the first one's
        root.removeHandler(handler)
        handler.close()
    _installed[:] = [stderr, to_file]
    for handler in _installed:
        root.addHandler(handler)
    for name in NIGHTOWL_LOGGERS:  # other libraries stay at their warning level: their debug output is noise here
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)
    return path


def plain(text: str) -> None:
    """`text` on stdout exactly as given (no markup, wrapping or highlighting): for output scripts parse."""
    out.out(text, highlight=False)
