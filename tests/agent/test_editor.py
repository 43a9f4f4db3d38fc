"""str_replace_editor against a real workspace, with SWE-agent's output shapes."""
from __future__ import annotations

import os

import pytest

from agent.tools.editor import Editor, ToolError
from agent.tools.specs import EditorArgs
from sandbox.local import LocalSandbox
from sandbox.workspace import create_workspace, remove_workspace


@pytest.fixture
def editor(user_repo, tmp_path):
    ws = create_workspace(user_repo, "HEAD", tmp_path / "ws")
    sandbox = LocalSandbox(ws)
    yield Editor(sandbox), sandbox.root
    sandbox.close()
    remove_workspace(ws)


def call(editor, **kwargs):
    return editor(EditorArgs(**kwargs))


def test_view_file_is_cat_n(editor):
    ed, root = editor
    out = call(ed, command="view", path=f"{root}/calc.py")
    assert out.startswith(f"Here's the result of running `cat -n` on {root}/calc.py:\n")
    assert "     1\tdef add(a, b):" in out
    ranged = call(ed, command="view", path=f"{root}/calc.py", view_range=[3, -1])
    assert "     3\t    return a - b" in ranged and "     1\t" not in ranged


def test_view_directory_lists_two_levels_without_hidden(editor):
    ed, root = editor
    os.makedirs(f"{root}/pkg/sub/deep")
    out = call(ed, command="view", path=root)
    assert out.startswith(f"Here's the files and directories up to 2 levels deep in {root}, excluding hidden items:")
    assert f"{root}/calc.py" in out and f"{root}/pkg/sub" in out
    assert f"{root}/pkg/sub/deep" not in out and ".git" not in out


def test_str_replace_requires_exactly_one_occurrence_and_shows_snippet(editor):
    ed, root = editor
    with pytest.raises(ToolError, match="did not appear verbatim"):
        call(ed, command="str_replace", path=f"{root}/calc.py", old_str="nope", new_str="x")
    call(ed, command="create", path=f"{root}/dup.py", file_text="x = 1\nx = 1\n")
    with pytest.raises(ToolError, match=r"Multiple occurrences of old_str `x = 1` in lines \[1, 2\]"):
        call(ed, command="str_replace", path=f"{root}/dup.py", old_str="x = 1", new_str="y")
    out = call(ed, command="str_replace", path=f"{root}/calc.py", old_str="a - b", new_str="a + b")
    assert out.startswith(f"The file {root}/calc.py has been edited. Here's the result of running `cat -n` on a snippet")
    assert "     3\t    return a + b" in out and out.endswith("Edit the file again if necessary.")


def test_insert_create_and_undo(editor):
    ed, root = editor
    out = call(ed, command="insert", path=f"{root}/calc.py", insert_line=0, new_str="import math")
    assert "     1\timport math" in out
    undone = call(ed, command="undo_edit", path=f"{root}/calc.py")
    assert "undone successfully" in undone and "import math" not in open(f"{root}/calc.py").read()
    with pytest.raises(ToolError, match="No edit history"):
        call(ed, command="undo_edit", path=f"{root}/calc.py")
    with pytest.raises(ToolError, match="already exists"):
        call(ed, command="create", path=f"{root}/calc.py", file_text="")
    with pytest.raises(ToolError, match="not an absolute path"):
        call(ed, command="view", path="calc.py")


def test_paths_outside_the_repository_are_refused(editor, tmp_path):
    ed, root = editor
    secret = tmp_path / "secret.txt"
    secret.write_text("TOKEN=hunter2")
    os.symlink(secret, f"{root}/leak.txt")
    for path in (f"{root}/leak.txt", f"{root}/../secret.txt", "/etc/passwd"):
        with pytest.raises(ToolError, match="outside the repository"):
            call(ed, command="view", path=path)
    with pytest.raises(ToolError, match="outside the repository"):
        call(ed, command="str_replace", path=f"{root}/leak.txt", old_str="TOKEN", new_str="x")
    assert secret.read_text() == "TOKEN=hunter2"


def test_git_hooks_and_config_are_protected(editor):
    ed, root = editor
    with pytest.raises(ToolError, match="protected"):
        call(ed, command="create", path=f"{root}/.git/hooks/pre-commit", file_text="#!/bin/sh\ntouch /tmp/pwned\n")
