"""What the benchmarks print about the machine, and waiting for a quiet moment on a shared one."""
from __future__ import annotations

import os
import platform
import sys
import time


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_quiet(threshold: float, max_wait_s: float) -> str:
    """Waits until the 1-minute load average is below `threshold` (or `max_wait_s` passed); returns what it saw."""
    start = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - start < max_wait_s:
        print(f"load average {load_average()}: waiting for < {threshold:g} …", file=sys.stderr)
        time.sleep(15)
    waited = time.monotonic() - start
    return f"load average {load_average()} at start (waited {waited:.0f} s for < {threshold:g})"


def machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, uid {os.getuid()}")
