"""One persistent bash session per rollout, inside whatever the backend runs commands in.

The working directory, variables, functions, aliases and activated virtual environments carry over from one
command to the next, as in the shell SWE-agent-trained models learnt in. Inside the sandbox:

* an outer bash that never reads a command: it keeps an inner bash running and, when the inner one ends (a
  command ran `exit`, or it was killed), reports its exit code and starts another;
* the inner bash runs the driver loop: read one NUL-terminated command from stdin, `eval` it inside a function
  with stdin from /dev/null, report its exit code. (Inside a function so that an interrupt can return from it;
  `declare` and `typeset` are aliased to their `-g` forms so that they still make globals, as at top level.)

Both report on a status pipe (fd 3 inside, closed for the commands themselves): `O pid` (outer started), `R pid`
(an inner shell is ready), `S code` (a command finished), `X code` (the inner shell ended). Commands write
stdout and stderr to the session's output file, shared with the host in append mode, read back (head and tail,
with true counts of the rest) and emptied after every command; what background processes print between
commands shows up with the next one, as it would in a terminal.

A command past its timeout gets SIGINT, as from Ctrl-C (the driver's INT trap returns from the function, so a
builtin loop stops too, and background jobs, which ignore SIGINT, keep running). If it has not stopped after a
grace period, every process the shell started is killed; if the shell still does not answer, the inner shell is
killed and a fresh one started (the outer shell, so the sandbox's /tmp and background processes, stay); if the
whole session is gone, it is started again. The result says which (`CommandResult.shell_restarted`). `close`
kills everything the session started.
"""
from __future__ import annotations

import fcntl
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from sandbox.base import CommandResult, SandboxError
from sandbox.process import read_head_and_tail

OUTER = """exec 3>&{fd} {fd}>&- 4>&2 2>/dev/null
trap : INT
printf 'O %d\\n' "$$" >&3
while :; do
  bash --noprofile --norc -c "$1" bash 2>&4 4>&-
  printf 'X %d\\n' "$?" >&3
done
"""
"""The outer shell: its own stderr is /dev/null (no "Killed" notice when an inner shell is killed)."""
LIBRARY = """__nightowl_run() { eval "$__nightowl_command"; }
"""
"""Sourced by the inner shell from a file named `bash`: errors inside the function then read `bash: ...` as in
any shell (a function defined in a `-c` string reports them as `environment: ...`)."""
DRIVER = """shopt -s expand_aliases
alias declare='declare -g' typeset='typeset -g'
__nightowl_dir=$PWD
cd {lib} && PATH= source bash
cd "$__nightowl_dir"; unset OLDPWD __nightowl_dir
trap 'return 130 2>/dev/null' INT
printf 'R %d\\n' "$$" >&3
while :; do
  IFS= read -r -d '' __nightowl_command
  __nightowl_status=$?
  [ "$__nightowl_status" -gt 128 ] && continue
  [ "$__nightowl_status" -ne 0 ] && {{ kill -KILL "$PPID" 2>/dev/null; exit 0; }}
  __nightowl_run </dev/null 3>&-
  printf 'S %d\\n' "$?" >&3
done
"""
"""`read` fails above 128 when a late interrupt arrives while it waits (ignored), and otherwise only at end of
input: the host is gone, so the outer shell is killed instead of restarting shells that read nothing."""
START_TIMEOUT_S = 30.0
INTERRUPT_GRACE_S = 2.0
"""How long a command gets to stop after SIGINT, and then after its processes were killed."""


class SessionDead(Exception):
    """The status pipe closed: the whole session (and its sandbox) is gone."""


def process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = process_tree() if tree is None else tree
    found, stack = [], list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def innermost_pid(pid: int) -> int | None:
    """`pid` as the process itself sees it: the last NSpid entry (its pid in its own pid namespace)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def kill_pids(pids: Sequence[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for(fd: int, event: int, timeout_s: float) -> bool:
    """Whether `fd` is ready (or closed) within `timeout_s`; poll, not select: fd numbers in a busy shift pass 1024."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(0, int(timeout_s * 1000 + 0.999))))


def output_file() -> int:
    """An unlinked temporary file opened for append: after the host truncates it, writers start again at 0."""
    fd, path = tempfile.mkstemp(prefix="nightowl-shell-")
    os.unlink(path)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return fd


class ShellSession:
    """A persistent bash session; `prefix` is the backend's argv before `bash` (bwrap's, or nothing), `lib` the
    directory holding LIBRARY as `bash` as the session sees it (sandbox/shims.py writes it)."""

    def __init__(self, prefix: Sequence[str], *, cwd: str, env: dict[str, str], lib: str, bash: str = "bash",
                 preexec: Callable[[], None] | None = None, sweep: Callable[[], None] | None = None,
                 on_close: Callable[["ShellSession"], None] = lambda session: None):
        self.prefix, self.cwd, self.env, self.bash = list(prefix), cwd, env, bash
        self.driver = DRIVER.format(lib=shlex.quote(lib))
        self.preexec, self.sweep, self.on_close = preexec, sweep, on_close
        self.proc: subprocess.Popen | None = None
        self._out: int | None = None
        self._status: int | None = None
        self.closed = False
        self._start()

    # -- lifecycle -----------------------------------------------------------------------------------

    def _start(self) -> None:
        self._out = output_file()
        status_r, first_w = os.pipe()
        status_w = fcntl.fcntl(first_w, fcntl.F_DUPFD_CLOEXEC, 10)  # clear of the fds OUTER moves it between
        os.close(first_w)
        self._status, self._buffer = status_r, b""
        os.set_blocking(status_r, False)
        argv = [*self.prefix, self.bash, "--noprofile", "--norc", "-c", OUTER.format(fd=status_w),
                "nightowl-shell", self.driver]
        try:
            self.proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=self._out,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self.preexec,
                                         pass_fds=(status_w,), close_fds=True)
        except OSError as e:
            self._release()
            raise SandboxError(f"the shell session could not start: {e}") from None
        finally:
            os.close(status_w)
        os.set_blocking(self.proc.stdin.fileno(), False)  # type: ignore[union-attr]
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            self.outer_host_pid = self._host_pid(self._expect("O", deadline))
            self._expect("R", deadline)
        except (SessionDead, TimeoutError):
            output = read_head_and_tail(self._out).head.strip()
            self._kill_all()
            self._release()
            raise SandboxError("the shell session did not start" + (f": {output[-2000:]}" if output else "")) from None

    def _restart(self) -> None:
        self._kill_all()
        self._release()
        self._start()

    def close(self) -> None:
        """Kill everything the session started (background processes included) and release it."""
        if self.closed:
            return
        self.closed = True
        self._kill_all()
        self._release()
        self.on_close(self)

    def _kill_all(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pids = descendants(proc.pid)  # collected first: an orphan loses its link to the tree
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        kill_pids(pids)
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        proc.wait()
        if self.sweep is not None:
            self.sweep()

    def _release(self) -> None:
        for fd in (self._out, self._status):
            if fd is not None:
                os.close(fd)
        self._out = self._status = None  # type: ignore[assignment]

    # -- the status pipe -----------------------------------------------------------------------------

    def _line(self, deadline: float | None) -> str | None:
        """The next status line; None if none came by `deadline` (None: only what is there already)."""
        while b"\n" not in self._buffer:
            assert self._status is not None, "the session was released"
            timeout = 0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not wait_for(self._status, select.POLLIN, timeout):
                return None
            chunk = os.read(self._status, 4096)
            if not chunk:
                raise SessionDead()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _expect(self, kind: str, deadline: float) -> int:
        while True:
            line = self._line(deadline)
            if line is None:
                raise TimeoutError(kind)
            if line.startswith(kind + " "):
                return int(line.split()[1])

    def _host_pid(self, inner_pid: int) -> int:
        """The host pid of the session's process that calls itself `inner_pid` (they differ under a pid namespace)."""
        assert self.proc is not None
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            if innermost_pid(pid) == inner_pid:
                return pid
        raise SessionDead()

    def _inner_host_pid(self) -> int | None:
        """The inner shell: the outer shell's child."""
        children = process_tree().get(self.outer_host_pid, [])
        return children[0] if children else None

    # -- commands ------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        if self.closed:
            raise SandboxError("the shell session is closed")
        start = time.monotonic()
        restarted = self._restarted_while_idle()
        returncode: int | None = None
        timed_out = False
        data = command.replace("\0", "").encode() + b"\0"
        try:
            try:
                self._send(data, start + timeout)
            except SessionDead:  # no shell read it: start afresh and run it there
                self._restart()
                restarted = "died"
                self._send(data, start + timeout)
            returncode, ended = self._wait(start + timeout)
            restarted = "exit" if ended else restarted
        except TimeoutError:
            timed_out = True
            restarted = None if self._interrupt() else "timeout"
        except SessionDead:
            restarted = "died"
        assert self._out is not None, "the session was released"
        captured = read_head_and_tail(self._out)
        os.ftruncate(self._out, 0)
        if self.proc is None or self.proc.poll() is not None or restarted == "died":
            self._restart()
        result = captured.result(returncode, timed_out, time.monotonic() - start)
        result.shell_restarted = restarted
        return result

    def _restarted_while_idle(self) -> str | None:
        """An inner shell that ended between commands (killed from outside, out of CPU time) was replaced."""
        try:
            while (line := self._line(None)) is not None:
                if line.startswith("X "):
                    return "died"
        except SessionDead:
            self._restart()
            return "died"
        if self.proc is None or self.proc.poll() is not None:
            self._restart()
            return "died"
        return None

    def _send(self, data: bytes, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("write")
            if not wait_for(fd, select.POLLOUT, remaining):
                continue
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise SessionDead() from None

    def _wait(self, deadline: float) -> tuple[int, bool]:
        """(exit code, whether the command ended the shell) once the command finished; TimeoutError at `deadline`."""
        while True:
            line = self._line(deadline)
            if line is None:
                raise TimeoutError("command")
            kind, _, value = line.partition(" ")
            if kind == "S":
                return int(value), False
            if kind == "X":
                self._expect("R", time.monotonic() + START_TIMEOUT_S)
                return int(value), True

    def _interrupt(self) -> bool:
        """Stop the running command; True if the shell carried on, False if it had to be started afresh."""
        try:
            os.killpg(os.getpgid(self.outer_host_pid), signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass
        for escalate in (self._kill_children, self._kill_inner, None):
            try:
                _, ended = self._wait(time.monotonic() + INTERRUPT_GRACE_S)
                return not ended
            except TimeoutError:
                if escalate is None:
                    break
                escalate()
            except SessionDead:
                return False
        self._kill_all()  # not even a fresh inner shell answers: `run` starts the whole session again
        return False

    def _kill_children(self) -> None:
        inner = self._inner_host_pid()
        if inner is not None:
            kill_pids(descendants(inner))

    def _kill_inner(self) -> None:
        inner = self._inner_host_pid()
        if inner is not None:
            kill_pids([*descendants(inner), inner])


__all__ = ["ShellSession"]
