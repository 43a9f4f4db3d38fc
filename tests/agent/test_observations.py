"""Clean observations: no raw control bytes, binary described in one line, clipping notes with true counts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.parsing import ToolCall
from agent.tools import ToolBox
from agent.tools.output import clip_parts, terminal_text
from sandbox.local import LocalSandbox
from sandbox.workspace import create_workspace

RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8


@pytest.fixture(params=["persistent", "stateless"])
def box(request, user_repo, tmp_path):
    sandbox = LocalSandbox(create_workspace(user_repo, "HEAD", tmp_path / "ws"))
    toolbox = ToolBox(sandbox, command_timeout_s=30, observation_cap=16000, shell=request.param)
    yield toolbox, sandbox
    toolbox.close()
    sandbox.close()


def call(name, **arguments):
    return ToolCall(id="c1", name=name, arguments=arguments, raw_arguments="{}")


def bash(toolbox, command):
    return toolbox.execute(call("bash", command=command))


def test_viewing_a_binary_file_is_one_line(box):
    toolbox, sandbox = box
    Path(sandbox.root, "logo.png").write_bytes(PNG)
    out = toolbox.execute(call("str_replace_editor", command="view", path=f"{sandbox.root}/logo.png")).observation
    assert out == (f"{sandbox.root}/logo.png is a binary file ({len(PNG):,} bytes, looks like a PNG image); `view` shows "
                   f"text files only. Look inside it with bash, e.g. `od -c {sandbox.root}/logo.png | head`.")


def test_control_characters_in_a_text_file_are_escaped_and_lines_kept(box):
    toolbox, sandbox = box
    Path(sandbox.root, "odd.py").write_bytes(b"a = 1\r\n\x0c\ndef f():\n\treturn '\x1b[31m'\x07\n")
    out = toolbox.execute(call("str_replace_editor", command="view", path=f"{sandbox.root}/odd.py")).observation
    assert not RAW_CONTROL.search(out.replace("\t", ""))
    assert "     1\ta = 1\n     2\t\\x0c\n     3\tdef f():\n     4\t        return '\\x1b[31m'\\x07\n" in out


def test_binary_command_output_is_described_not_dumped(box):
    toolbox, sandbox = box
    Path(sandbox.root, "logo.png").write_bytes(PNG)
    out = bash(toolbox, "cat logo.png").observation
    assert out.startswith(f"The output is binary data ({len(PNG):,} bytes, looks like a PNG image), so it is not shown.")
    small = bash(toolbox, r"printf 'a\0b\n'; printf '\033[1;32mgreen\033[0m\n'; printf 'one\rtwo\n'").observation
    assert small == "a\\x00b\ngreen\ntwo\n"


@pytest.mark.parametrize("lines", [6_500_000, 40_000])
def test_elided_counts_are_true_for_big_outputs(box, lines):
    toolbox, _ = box
    out = bash(toolbox, f"seq 1 {lines}").observation
    note = re.search(r"(\d+) characters \((\d+) lines\) were elided", out)
    assert note and out.count("<response clipped>") == 1 and len(out) <= 16000
    head, tail = out.split("<response clipped>")[0], out.split("</NOTE>\n")[1]
    shown = head.splitlines() + tail.splitlines()
    assert shown[0] == "1" and shown[-1] == str(lines)
    assert len(shown) + int(note.group(2)) == lines  # every line is shown or counted
    total_chars = len("".join(f"{i}\n" for i in range(1, lines + 1)))
    assert len(head) + len(tail) + int(note.group(1)) == total_chars


def test_exit_codes_are_recorded_and_failures_without_output_say_so(box):
    toolbox, _ = box
    ok, failed = bash(toolbox, "true"), bash(toolbox, "exit 3" if toolbox.shell_mode == "stateless" else "false")
    assert ok.exit_code == 0 and ok.observation == "Your command ran successfully and did not produce any output."
    assert failed.exit_code in (1, 3) and f"exited with code {failed.exit_code}" in failed.observation


def test_the_shell_exit_and_timeouts_are_told(user_repo, tmp_path):
    sandbox = LocalSandbox(create_workspace(user_repo, "HEAD", tmp_path / "ws"))
    toolbox = ToolBox(sandbox, command_timeout_s=1, observation_cap=16000)
    try:
        exited = bash(toolbox, "cd /tmp; exit 4")
        assert exited.exit_code == 4 and "exited the shell (exit code 4)" in exited.observation
        slow = bash(toolbox, "echo partial; sleep 30")
        assert slow.exit_code is None and "was interrupted" in slow.observation and slow.observation.endswith("partial\n")
        assert bash(toolbox, "pwd").observation == f"{sandbox.root}\n"
    finally:
        toolbox.close()
        sandbox.close()


def test_clip_parts_counts_what_it_never_saw():
    out = clip_parts("a\n" * 5000, "z\n" * 5000, 2000, dropped_chars=1000, dropped_lines=500)
    elided = re.search(r"(\d+) characters \((\d+) lines\)", out)
    assert out.count("a\n") + out.count("z\n") + int(elided.group(2)) == 10500
    assert terminal_text("x\x1b]0;title\x07y\r\nprogress 10%\rprogress 100%\n") == "xy\nprogress 100%\n"
