"""Internal errors (bugs): the full traceback goes to a log file, the user gets one line pointing at it."""
from __future__ import annotations

import os
import traceback
from datetime import datetime, timezone
from pathlib import Path

CRASH_DIR = Path.home() / ".nightowl" / "logs"


def report_bug(error: BaseException, command: str, crash_dir: Path | None = None) -> str:
    """Writes the traceback to `crash_dir` and returns the short message for the user."""
    crash_dir = crash_dir or Path(os.environ.get("NIGHTOWL_CRASH_DIR") or CRASH_DIR)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(error))
    summary = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    try:
        crash_dir.mkdir(parents=True, exist_ok=True)
        path = crash_dir / f"crash-{stamp}-{os.getpid()}-{command}.log"
        path.write_text(text, encoding="utf-8")
    except OSError:
        return f"{summary} (could not write the traceback to {crash_dir}:\n{text})"
    return f"{summary}; the traceback is in {path} (please report it)"
