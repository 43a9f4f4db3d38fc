"""What real models do to real repositories — failed edits, legacy encodings, big files, FIFOs,
new tools, internal errors. Real runs through the scripted server, real git, real sandboxes."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.parsing import ToolCall
from agent.run import run_task
from agent.scripted_server import ScriptedServer
from agent.tools import DEFAULT_TOOLS, TOOL_SPECS, Tool, ToolBox
from agent.tools.editor import Editor
from agent.tools.specs import EditorArgs
from agent.trajectory import ExitStatus, load_trajectory
from sandbox.local import LocalSandbox
from sandbox.workspace import create_workspace
from tests.agent.scripts import by_turn, native
from tests.agent.test_run_end_to_end import request_for
from tests.helpers import git

LATIN1_FIRST_LINE = "# Auteur: Ren\xe9 M\xfcller \xa9 2003\n".encode("latin-1")
LATIN1_SOURCE = LATIN1_FIRST_LINE + b"def add(a, b):\n\treturn a - b  # caf\xe9\n"


def test_three_failed_edits_are_observations_and_the_fourth_edit_lands(user_repo, tmp_path):
    def miss(root):
        return native("str_replace_editor", command="str_replace", path=f"{root}/calc.py",
                      old_str="return a-b", new_str="return a + b")

    steps = [miss, miss, miss,
             lambda root: native("str_replace_editor", command="str_replace", path=f"{root}/calc.py",
                                 old_str="    return a - b", new_str="    return a + b"),
             lambda root: native("submit"), lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, sandbox="auto", stuck_repeats=5))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.submitted, traj.exit_message
    assert traj.parse_failures == 0
    assert all("did not appear verbatim" in s.executions[0].observation for s in traj.steps[:3])
    assert "+    return a + b" in outcome.patch_path.read_text()


def latin1_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "legacy"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "calc.py").write_bytes(LATIN1_SOURCE)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "legacy")
    return repo


def test_a_latin1_file_keeps_its_bytes_on_the_branch(tmp_path):
    repo = latin1_repo(tmp_path)
    steps = [lambda root: native("str_replace_editor", command="view", path=f"{root}/calc.py"),
             lambda root: native("str_replace_editor", command="str_replace", path=f"{root}/calc.py",
                                 old_str="return a - b  # café", new_str="return a + b  # café"),
             lambda root: native("submit"), lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(repo, server, tmp_path / "runs", sandbox="auto"))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.submitted and outcome.branch and outcome.branch_error is None
    assert "not UTF-8" in traj.steps[0].executions[0].observation and "René" in traj.steps[0].executions[0].observation
    on_branch = subprocess.run(["git", "-C", str(repo), "show", f"{outcome.branch}:calc.py"],
                               capture_output=True, check=True).stdout
    assert on_branch.splitlines(keepends=True)[0] == LATIN1_FIRST_LINE
    assert on_branch == LATIN1_SOURCE.replace(b"a - b", b"a + b")  # the tab and every other byte kept
    assert b"caf\xe9" in outcome.patch_path.read_bytes()


def test_a_patch_that_cannot_become_a_branch_is_a_result(tmp_path, monkeypatch):
    repo = latin1_repo(tmp_path)
    git(repo, "branch", "taken")
    steps = [lambda root: native("bash", command="echo x > new.txt"), lambda root: native("submit"),
             lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        request = request_for(repo, server, tmp_path / "runs")
        request.branch = "taken/sub"  # refs/heads/taken is a file: git cannot create taken/sub
        outcome = run_task(request)
    assert outcome.exit_status == ExitStatus.submitted and outcome.branch is None
    assert outcome.branch_error and "taken/sub" in outcome.branch_error
    traj = load_trajectory(outcome.trajectory_path)
    assert traj.exit_status == ExitStatus.submitted and "no branch" in traj.exit_message
    assert b"new.txt" in outcome.patch_path.read_bytes()


@pytest.fixture
def box(user_repo, tmp_path):
    ws = create_workspace(user_repo, "HEAD", tmp_path / "ws")
    sandbox = LocalSandbox(ws)
    yield ToolBox(sandbox, command_timeout_s=10, observation_cap=16000), sandbox
    sandbox.close()


def call(name, **arguments):
    return ToolCall(id="c1", name=name, arguments=arguments, raw_arguments=json.dumps(arguments))


def test_a_big_view_is_clipped_once_on_whole_lines(box):
    toolbox, sandbox = box
    Path(sandbox.root, "big.py").write_text("".join(f"value_{i:04d} = compute({i}, 'some padding text here')\n"
                                                    for i in range(420)))
    out = toolbox.execute(call("str_replace_editor", command="view", path=f"{sandbox.root}/big.py")).observation
    assert len(out) <= 16000
    numbers = [int(line.split("\t")[0]) for line in out.splitlines()[1:] if line[:6].strip().isdigit()]
    assert numbers == list(range(1, len(numbers) + 1)) and 200 < len(numbers) < 420
    assert all(line.endswith("'some padding text here')") for line in out.splitlines()[1:len(numbers) + 1])
    assert out.count("<response clipped>") == 1 and f"[{numbers[-1] + 1}, " in out


def test_viewing_a_fifo_returns_an_error_at_once(box):
    toolbox, sandbox = box
    os.mkfifo(Path(sandbox.root, "pipe"))
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        e=toolbox.execute(call("str_replace_editor", command="view", path=f"{sandbox.root}/pipe"))), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(1.0)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert "FIFO" in result["e"].observation and result["e"].error and not result["e"].rejected
    edit = toolbox.execute(call("str_replace_editor", command="str_replace", path=f"{sandbox.root}/pipe",
                                old_str="a", new_str="b"))
    assert "FIFO" in edit.observation


def test_editor_write_never_follows_a_planted_temp_link(box, tmp_path):
    toolbox, sandbox = box
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    for name in (".calc.py.nightowl-tmp", ".calc.py.tmp"):
        os.symlink(victim, Path(sandbox.root, name))
    toolbox.execute(call("str_replace_editor", command="str_replace", path=f"{sandbox.root}/calc.py",
                         old_str="a - b", new_str="a + b"))
    assert victim.read_text() == "untouched\n" and "a + b" in Path(sandbox.root, "calc.py").read_text()


def test_huge_files_are_refused_not_read(box):
    toolbox, sandbox = box
    with open(Path(sandbox.root, "huge.bin"), "wb") as f:
        f.truncate(1 << 30)
    out = toolbox.execute(call("str_replace_editor", command="view", path=f"{sandbox.root}/huge.bin"))
    assert "1024.0 MiB" in out.observation and "grep" in out.observation


def test_crlf_and_tabs_survive_an_edit(box):
    _, sandbox = box
    editor = Editor(sandbox)
    path = Path(sandbox.root, "win.py")
    path.write_bytes(b"if x:\r\n\tdo(1)\r\n\tdo(2)\r\n")
    editor(EditorArgs(command="str_replace", path=str(path), old_str="        do(2)", new_str="        do(3)"))
    assert path.read_bytes() == b"if x:\r\n\tdo(1)\r\n        do(3)\r\n"


class NoteArgs(BaseModel):
    text: str


def test_tools_come_from_one_registry_and_an_unknown_model_cannot_reach_submit(box):
    toolbox, sandbox = box
    assert TOOL_SPECS == json.loads((Path(__file__).parent / "data" / "tool-specs-v1.json").read_text())
    notes: list[str] = []
    note = Tool("note", "keeps a note", NoteArgs, lambda b, args: (notes.append(args.text) or "noted", None))
    extended = ToolBox(sandbox, 10, 16000, tools=[*DEFAULT_TOOLS, note])
    assert extended.specs[-1]["function"]["parameters"] == {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    result = extended.execute(call("note", text="remember"))
    assert result.observation == "noted" and notes == ["remember"] and extended.submit_calls == 0
    unknown = toolbox.execute(call("note", text="x"))
    assert unknown.rejected and "Unknown tool `note`" in unknown.observation and toolbox.submit_calls == 0


def test_an_internal_error_ends_the_run_as_internal_error_not_running(user_repo, tmp_path, monkeypatch):
    def broken(self, call):
        raise KeyError("a bug")
    monkeypatch.setattr(ToolBox, "execute", broken)
    with ScriptedServer(by_turn([lambda root: native("bash", command="ls")])) as server:
        with pytest.raises(KeyError):
            run_task(request_for(user_repo, server, tmp_path))
    traj = load_trajectory(next(tmp_path.glob("*/trajectory.json")))
    assert traj.exit_status == ExitStatus.internal_error and "KeyError" in traj.exit_message
