"""The persistent shell session (sandbox/shell.py) on every backend: state carries over, timeouts interrupt and
the session survives (or is restarted and says so), exit codes, and nothing it started outlives it."""
from __future__ import annotations

import os
import signal
import time

import pytest

from sandbox import shell as shell_module
from tests.sandbox.test_escapes import assert_no_leftovers, host_processes_with, unique_sleep


@pytest.fixture(autouse=True)
def quick_escalation(monkeypatch):
    monkeypatch.setattr(shell_module, "INTERRUPT_GRACE_S", 0.5)


@pytest.fixture
def session(make_sandbox, backend):
    sb = make_sandbox(backend)
    sh = sb.open_shell()
    yield sh, sb
    sh.close()


def run(sh, command, timeout=10.0):
    return sh.run(command, timeout)


def running(marker: str) -> bool:
    """A process with `marker` in its command line shows up within a few seconds (fork, then exec)."""
    deadline = time.monotonic() + 5
    while not host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(host_processes_with(marker))


def test_directory_variables_functions_aliases_and_venvs_carry_over(session):
    sh, sb = session
    assert run(sh, "mkdir -p pkg && cd pkg").returncode == 0
    assert run(sh, "pwd").output == f"{sb.root}/pkg\n"
    run(sh, "export GREETING=hi; COUNT=3; declare -A seen=([a]=1)")
    assert run(sh, "echo $GREETING $COUNT ${seen[a]}").output == "hi 3 1\n"
    run(sh, "greet() { echo \"hello $1\"; }; alias ll='ls -1'")
    assert run(sh, "greet you; cd .. && ll | grep -c app.py").output == "hello you\n1\n"
    run(sh, "mkdir -p /tmp/venv/bin && printf 'export VIRTUAL_ENV=/tmp/venv\\nexport PATH=/tmp/venv/bin:$PATH\\n"
            "deactivate() { export PATH=${PATH#/tmp/venv/bin:}; unset VIRTUAL_ENV; }\\n' > /tmp/venv/bin/activate && "
            "printf '#!/bin/sh\\necho venv-python\\n' > /tmp/venv/bin/python && chmod +x /tmp/venv/bin/python")
    run(sh, "source /tmp/venv/bin/activate")
    assert run(sh, "echo $VIRTUAL_ENV; python").output == "/tmp/venv\nvenv-python\n"
    run(sh, "deactivate")
    assert run(sh, "python -c 'print(6 * 7)'").output == "42\n"  # the shim: python3


def test_exit_codes_errors_and_an_exit_that_ends_the_shell(session):
    sh, sb = session
    assert run(sh, "true").returncode == 0 and run(sh, "false").returncode == 1
    result = run(sh, "no_such_command_xyz")
    assert result.returncode == 127 and result.output.startswith("bash: ")  # as in any bash, not `environment:`
    assert run(sh, 'echo "unterminated').returncode == 2
    run(sh, "cd /tmp && export KEPT=1")
    ended = run(sh, "echo bye; exit 3")
    assert ended.returncode == 3 and ended.shell_restarted == "exit" and ended.output == "bye\n"
    after = run(sh, "pwd; echo ${KEPT:-unset}")
    assert after.output == f"{sb.root}\nunset\n" and after.shell_restarted is None


@pytest.mark.parametrize("command", ["sleep 100", "while :; do :; done", "while true; do sleep 0.1; done",
                                     "cat", "python3 -c 'import time; time.sleep(100)'"])
def test_a_timed_out_command_is_interrupted_and_the_session_survives(session, command):
    sh, _ = session
    run(sh, "cd /tmp && export KEPT=yes")
    started = time.monotonic()
    result = run(sh, command, timeout=1)
    if command == "cat":  # reads no input: ends at once
        assert not result.timed_out and result.returncode == 0
    else:
        assert result.timed_out and result.returncode is None and result.shell_restarted is None
        assert time.monotonic() - started < 1 + 0.5 + 1  # interrupted within the first grace period
    assert run(sh, "echo $KEPT; pwd").output == "yes\n/tmp\n"


def test_a_command_that_never_ends_and_ignores_interrupts(session):
    sh, sb = session
    run(sh, "export KEPT=yes")
    ignoring = run(sh, "python3 -c 'import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                       "print(\"started\", flush=True); time.sleep(1000)'", timeout=1)
    assert ignoring.timed_out and ignoring.shell_restarted is None and ignoring.output == "started\n"
    assert run(sh, "echo $KEPT").output == "yes\n"  # its processes were killed, the shell carried on
    stuck = run(sh, "f() { trap '' INT; while :; do :; done; }; f", timeout=1)
    assert stuck.timed_out and stuck.shell_restarted == "timeout"  # the shell itself had to go
    assert run(sh, "echo ${KEPT:-reset}; pwd").output == f"reset\n{sb.root}\n"


def test_background_processes_run_until_the_session_closes(make_sandbox, backend):
    sb = make_sandbox(backend)
    sh = sb.open_shell()
    a, b = unique_sleep(), unique_sleep()
    assert run(sh, f"sleep {a} > /dev/null 2>&1 & (sleep {b} </dev/null >/dev/null 2>&1 &); echo started").output == "started\n"
    assert run(sh, "echo next").output == "next\n"
    assert running(a) and running(b)  # still running between commands
    assert sb.execute("echo stateless", timeout=10).output == "stateless\n"  # a one-off command spares the session
    assert run(sh, "jobs | wc -l").output.strip() == "1" and running(a)
    sh.close()
    assert_no_leftovers(a)
    assert_no_leftovers(b)


def test_daemons_of_an_isolated_session_do_not_survive_it(make_sandbox, isolating):
    sb = make_sandbox(isolating)
    sh = sb.open_shell()
    a = unique_sleep()
    run(sh, f"setsid nohup sleep {a} >/dev/null 2>&1 & echo ok")
    assert running(a)
    sb.close()  # closing the sandbox closes its session
    assert_no_leftovers(a)


def test_output_between_commands_and_big_outputs(session):
    sh, _ = session
    result = run(sh, "seq 1 6500000")
    head, tail = result.head_and_tail()
    assert result.clipped_bytes > 0 and result.output_bytes == len("".join(f"{i}\n" for i in range(1, 6500001)))
    # every newline is counted: the ones shown plus the ones dropped
    assert head.count("\n") + result.clipped_lines + tail.count("\n") == 6500000
    assert tail.endswith("6500000\n") and head.startswith("1\n2\n")
    assert run(sh, "echo small").output == "small\n"  # the output file was emptied


def test_a_session_whose_sandbox_died_is_started_again(session):
    sh, sb = session
    run(sh, "export KEPT=1")
    os.killpg(sh.proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # bubblewrap takes the sandbox down after it
    result = run(sh, "echo ${KEPT:-fresh}")
    assert result.shell_restarted == "died" and result.output == "fresh\n"
    assert run(sh, "echo again").shell_restarted is None
