"""The agent's SWE-agent-style habits, checked from outside: a scripted model over real HTTP, the real loop, real
sandboxes, real git. Shell state carries over, text tool calls are understood, observations are clean, nothing the
agent does leaks into the user's repository."""
from __future__ import annotations

import json
import re

import pytest

from agent.run import run_task
from agent.scripted_server import ScriptedServer
from agent.tools.specs import SHELL_MODES
from agent.trajectory import ExitStatus, load_trajectory
from tests.agent.scripts import by_turn, native
from tests.agent.test_run_end_to_end import request_for
from tests.helpers import git, nightowl


def observations(outcome) -> list[str]:
    return [e.observation for s in load_trajectory(outcome.trajectory_path).steps for e in s.executions]


def content(text: str):
    return lambda root: {"content": text}


@pytest.mark.parametrize("sandbox", ["auto", "local"])
def test_cd_and_export_carry_over_to_the_next_call(user_repo, tmp_path, sandbox):
    (user_repo / "pkg").mkdir()
    (user_repo / "pkg" / "mod.py").write_text("x = 1\n")
    git(user_repo, "add", "pkg")
    git(user_repo, "commit", "-qm", "pkg")
    steps = [lambda root: native("bash", command="cd pkg"), lambda root: native("bash", command="pwd"),
             lambda root: native("bash", command="export GREETING=hi"),
             lambda root: native("bash", command="echo $GREETING")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path / "runs", sandbox=sandbox, max_steps=4))
        tools_sent = server.chat_requests()[0]["tools"]
    traj = load_trajectory(outcome.trajectory_path)
    root = "/repo" if sandbox == "auto" else traj.messages[1]["content"].split("checked out at ")[1].split()[0]
    seen = observations(outcome)
    assert seen[1] == f"{root}/pkg\n" and seen[3] == "hi\n"
    assert seen[0] == seen[2] == "Your command ran successfully and did not produce any output."
    assert [e.exit_code for s in traj.steps for e in s.executions] == [0, 0, 0, 0]
    bash = next(t for t in tools_sent if t["function"]["name"] == "bash")["function"]["description"]
    assert bash.startswith("runs the given command directly in bash\n") and SHELL_MODES["persistent"] in bash
    assert traj.settings["agent"]["shell"] == "persistent"


def test_the_stateless_mode_is_kept_and_says_so(user_repo, tmp_path):
    steps = [lambda root: native("bash", command="cd /tmp && export X=1"), lambda root: native("bash", command="pwd; echo ${X:-unset}")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, max_steps=2, shell="stateless"))
        bash = server.chat_requests()[0]["tools"][0]["function"]["description"]
    assert SHELL_MODES["stateless"] in bash and "persist" not in bash
    assert observations(outcome)[1].endswith("/workspace\nunset\n")  # back in the repository, X gone


@pytest.mark.parametrize("sandbox", ["auto", "local"])
def test_qwen3_coder_xml_in_content_is_run_and_python_exists(user_repo, tmp_path, sandbox):
    xml = "<function=bash>\n<parameter=command>\npython --version\n</parameter>\n</function>"
    with ScriptedServer(by_turn([content(xml)])) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, sandbox=sandbox, max_steps=1))
    traj = load_trajectory(outcome.trajectory_path)
    step = traj.steps[0]
    assert step.parse_source == "xml" and step.recovered == xml and traj.parse_failures == 0
    assert re.fullmatch(r"Python 3\.\d+\.\d+\n", step.executions[0].observation)
    # the history holds the call as a native tool call (what the chat template renders back in its own format)
    assert traj.messages[2]["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "python --version"}'}


def test_a_bare_json_submit_in_content_submits(user_repo, tmp_path):
    steps = [lambda root: {"content": '{"name": "bash", "arguments": {"command": "echo more >> calc.py"}}'},
             content('{"name": "submit", "arguments": {}}'), content('{"name": "submit", "arguments": {}}')]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.submitted and outcome.branch
    assert [s.parse_source for s in traj.steps] == ["bare_json"] * 3
    assert [s.recovered for s in traj.steps][1] == '{"name": "submit", "arguments": {}}'
    assert "+more" in outcome.patch_path.read_text()


def test_a_bash_only_model_answers_with_one_fenced_block(user_repo, tmp_path):
    steps = [content("THOUGHT: list the files first.\n\n```bash\nls\n```"),
             lambda root: native("submit"), lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, tools=["bash", "submit"]))
        sent = [t["function"]["name"] for t in server.chat_requests()[0]["tools"]]
    traj = load_trajectory(outcome.trajectory_path)
    assert sent == ["bash", "submit"] and outcome.exit_status == ExitStatus.submitted
    assert traj.steps[0].parse_source == "fenced_bash" and "calc.py" in traj.steps[0].executions[0].observation


def test_two_submits_in_one_reply_get_the_review_first(user_repo, tmp_path):
    twice = {"content": "", "tool_calls": [{"name": "submit", "arguments": {}}, {"name": "submit", "arguments": {}}]}
    steps = [lambda root: native("bash", command="echo change >> calc.py"), lambda root: twice,
             lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
    traj = load_trajectory(outcome.trajectory_path)
    review, second = traj.steps[1].executions
    assert "review your change" in review.observation and "+change" in review.observation
    assert "not executed" in second.observation and not second.rejected
    assert outcome.exit_status == ExitStatus.submitted and len(traj.steps) == 3  # the model saw the review
    assert traj.parse_failures == 0


def test_a_call_after_the_final_submit_is_not_run(user_repo, tmp_path):
    final = {"content": "", "tool_calls": [{"name": "submit", "arguments": {}},
                                           {"name": "bash", "arguments": {"command": "echo late >> calc.py"}}]}
    steps = [lambda root: native("bash", command="echo change >> calc.py"), lambda root: native("submit"),
             lambda root: final]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
    assert outcome.exit_status == ExitStatus.submitted
    assert "not executed" in observations(outcome)[-1] and "late" not in outcome.patch_path.read_text()


@pytest.mark.parametrize("sandbox", ["auto", "local"])
def test_symlinks_out_of_the_repository_and_special_files_stay_out_of_the_branch(user_repo, tmp_path, sandbox):
    plant = ("ln -s /etc/passwd leak && ln -s ../../../../../../etc/hostname rel && ln -s / root && "
             "ln -s .git/config gitcfg && ln -s calc.py ok && mkfifo pipe && rm test_calc.py && "
             "ln -s /etc/shadow test_calc.py && echo '# fixed' >> calc.py")
    steps = [lambda root: native("bash", command=plant), lambda root: native("submit"), lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, sandbox=sandbox))
    assert outcome.exit_status == ExitStatus.submitted and outcome.branch
    tree = git(user_repo, "ls-tree", "-r", "--name-only", outcome.branch).split()
    assert "leak" not in tree and "rel" not in tree and "root" not in tree and "gitcfg" not in tree and "pipe" not in tree
    assert "ok" in tree and "# fixed" in git(user_repo, "show", f"{outcome.branch}:calc.py")
    # a tracked file turned into an escaping link keeps its base content on the branch
    assert git(user_repo, "show", f"{outcome.branch}:test_calc.py") == git(user_repo, "show", "HEAD:test_calc.py")
    patch = outcome.patch_path.read_text()
    assert "/etc/passwd" not in patch and "leak" not in patch and "test_calc.py" not in patch
    left = {item["path"]: item["reason"] for item in outcome.left_out}
    assert set(left) == {"leak", "rel", "root", "gitcfg", "pipe", "test_calc.py"}
    assert "absolute path /etc/passwd" in left["leak"] and "outside" in left["rel"] and left["pipe"] == "a FIFO"
    traj = load_trajectory(outcome.trajectory_path)
    assert traj.left_out == outcome.left_out and "left out" in traj.exit_message
    assert "leak (a symlink to the absolute path /etc/passwd)" in traj.steps[1].executions[0].observation


def test_the_cli_json_lists_what_was_left_out(user_repo, tmp_path):
    steps = [lambda root: native("bash", command="ln -s /etc/passwd leak"), lambda root: native("submit"),
             lambda root: native("submit")]
    with ScriptedServer(by_turn(steps)) as server:
        proc = nightowl("run", user_repo, "--task", "t", "--base-url", server.base_url, "--model", server.model,
                        "--out", tmp_path / "runs", "--json", "--dangerously-no-sandbox")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["left_out"] == [{"path": "leak", "reason": "a symlink to the absolute path /etc/passwd"}]
    assert "leak" not in git(user_repo, "ls-tree", "-r", "--name-only", result["branch"]).split()
