"""Run one command as its own process group, with a wall timeout, and leave nothing behind."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox.base import CommandResult

MAX_CAPTURED_BYTES = 2 * 1024 * 1024
"""Output is spooled to a file; only this many bytes (head + tail) are ever read back."""


def kill_process_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit code, or None at the timeout.

    Blocks on a pidfd instead of `Popen.wait(timeout)`, whose sleep-and-poll loop adds up to half the
    command's duration (about 5 ms on a 15 ms sandboxed command).
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or poller.poll(remaining * 1000):
                break
    finally:
        os.close(pidfd)
    return proc.poll()


CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
CHUNK = 1 << 20


@dataclass(frozen=True)
class Captured:
    """A command's output as read back: all of it, or its head and tail with true counts of what is between."""
    head: str
    tail: str = ""
    dropped_bytes: int = 0
    dropped_chars: int = 0
    """Characters in the dropped bytes (UTF-8: every byte that is not a continuation byte)."""
    dropped_lines: int = 0
    """Newlines in the dropped bytes."""
    size: int = 0

    def result(self, returncode: int | None, timed_out: bool, duration_s: float) -> CommandResult:
        if not self.dropped_bytes:
            return CommandResult(output=self.head, returncode=returncode, timed_out=timed_out, duration_s=duration_s,
                                 output_bytes=self.size)
        marker = DROPPED_MARKER.format(dropped=self.dropped_bytes)
        return CommandResult(output=self.head + marker + self.tail, returncode=returncode, timed_out=timed_out,
                             duration_s=duration_s, clipped_bytes=self.dropped_bytes, clipped_chars=self.dropped_chars,
                             clipped_lines=self.dropped_lines, head_chars=len(self.head), tail_chars=len(self.tail),
                             output_bytes=self.size)


DROPPED_MARKER = "\n[... {dropped} bytes of output dropped ...]\n"


def pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.pread(fd, min(size, CHUNK), offset)):
        chunks.append(chunk)
        size, offset = size - len(chunk), offset + len(chunk)
    return b"".join(chunks)


def read_head_and_tail(fd: int, limit: int = MAX_CAPTURED_BYTES) -> Captured:
    """Read what was written to `fd` (a regular file, read from offset 0 without moving its offset): all of it up
    to `limit` bytes, else `limit / 2` bytes of head and of tail and the counts of what lies between."""
    size = os.fstat(fd).st_size
    if size <= limit:
        return Captured(pread_all(fd, size, 0).decode(errors="replace"), size=size)
    half = limit // 2
    head, tail = pread_all(fd, half, 0), pread_all(fd, half, size - half)
    chars = lines = 0
    for offset in range(half, size - half, CHUNK):
        chunk = pread_all(fd, min(CHUNK, size - half - offset), offset)
        chars += len(chunk.translate(None, CONTINUATION_BYTES))
        lines += chunk.count(b"\n")
    return Captured(head.decode(errors="replace"), tail.decode(errors="replace"), size - 2 * half, chars, lines, size)


def run_process(argv: Sequence[str], *, cwd: str, env: dict[str, str], timeout: float,
                preexec: Callable[[], None] | None = None, pass_fds: Sequence[int] = (),
                sweep: Callable[[], None] | None = None) -> CommandResult:
    """Run `argv` in a new session; kill its whole process group at the timeout and once it exits.

    Output goes to a temporary file, not a pipe: a background child that keeps the pipe open cannot hang
    us, and a command that prints gigabytes costs disk, not memory. `sweep` runs after the group kill to
    catch processes that left the group (setsid daemons), e.g. by emptying a cgroup.
    """
    start = time.monotonic()
    with tempfile.TemporaryFile(prefix="nightowl-out-") as out:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=preexec, pass_fds=tuple(pass_fds), close_fds=True,
        )
        returncode: int | None = None
        try:
            returncode = wait_for_exit(proc, timeout)
        finally:
            # The leader may be gone while children it backgrounded still run: sweep the whole group.
            kill_process_group(proc.pid)
            if proc.returncode is None:
                proc.wait()
            if sweep is not None:
                sweep()
        timed_out = returncode is None
        out.flush()
        captured = read_head_and_tail(out.fileno())
    return captured.result(returncode, timed_out, time.monotonic() - start)
