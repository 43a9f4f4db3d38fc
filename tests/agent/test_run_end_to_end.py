"""The real agent on a real git repo, driven by a scripted OpenAI-compatible server over real HTTP."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.loop import AgentConfig
from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.scripted_server import ScriptedServer
from agent.trajectory import ExitStatus, load_trajectory
from tests.agent.conftest import snapshot
from tests.agent.scripts import by_turn, fix_the_bug, hermes, native
from tests.helpers import git


def request_for(repo: Path, server: ScriptedServer, out: Path, sandbox: str = "local", **agent: object) -> RunRequest:
    return RunRequest(repo=repo, task="add() subtracts instead of adding; fix it.", sandbox=sandbox, out_dir=out,
                      model=ModelConfig(base_url=server.base_url, model=server.model, max_retries=3, timeout_s=30),
                      agent=AgentConfig(**{"max_steps": 20, "command_timeout_s": 20, **agent}))


@pytest.mark.parametrize("call,sandbox", [(native, "auto"), (hermes, "auto"), (native, "local")],
                         ids=["native-tool-calls-bwrap", "hermes-text-bwrap", "native-tool-calls-unsandboxed"])
def test_agent_fixes_a_bug_and_leaves_the_user_checkout_alone(user_repo, tmp_path, call, sandbox):
    before = snapshot(user_repo)
    with ScriptedServer(by_turn(fix_the_bug(call))) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path / "runs", sandbox=sandbox))

    assert outcome.exit_status == ExitStatus.submitted
    patch = outcome.patch_path.read_text()
    assert "-    return a - b" in patch and "+    return a + b" in patch
    assert "local edit in progress" not in patch  # the run starts from HEAD, not from the user's dirty tree

    # The branch holds exactly base + patch, and the user's checkout did not move.
    assert outcome.branch == f"nightowl/{outcome.run_id}"
    assert git(user_repo, "rev-parse", f"{outcome.branch}^") == before["HEAD"]
    assert "return a + b" in git(user_repo, "show", f"{outcome.branch}:calc.py")
    assert snapshot(user_repo) == before
    assert not (outcome.run_dir / "workspace").exists()

    traj = load_trajectory(outcome.trajectory_path)
    assert traj.exit_status == ExitStatus.submitted and traj.patch == patch
    assert [m["role"] for m in traj.messages[:2]] == ["system", "user"]
    assert traj.messages[-1]["role"] == "tool"
    assert [s.executions[0].tool for s in traj.steps] == ["bash", "str_replace_editor", "bash", "submit", "submit"]
    assert traj.steps[0].parse_source == ("native" if call is native else "hermes")
    assert traj.sandbox["backend"] == ("bwrap" if sandbox == "auto" else "local")
    if sandbox == "auto":
        assert "/repo" in traj.messages[1]["content"]  # no host temp paths reach the model
    assert "tests pass" in traj.steps[2].executions[0].observation
    assert traj.steps[2].executions[0].exit_code == 0
    assert "Review" in traj.steps[3].executions[0].observation or "review" in traj.steps[3].executions[0].observation
    assert traj.usage.total_tokens > 0 and traj.parse_failures == 0
    assert [t["function"]["name"] for t in traj.tools] == ["bash", "str_replace_editor", "submit"]
    # What the server received last is exactly the trajectory's history minus the final turn and its results.
    last_sent = server.chat_requests()[-1]["messages"]
    assert traj.messages[: len(last_sent)] == last_sent
    # Append-only history: every request extends the previous one.
    sent = [r["messages"] for r in server.chat_requests()]
    assert all(later[: len(earlier)] == earlier for earlier, later in zip(sent, sent[1:]))


def test_malformed_arguments_get_a_corrective_observation(user_repo, tmp_path):
    steps = fix_the_bug()
    broken = {"content": "", "tool_calls": [{"name": "bash", "arguments": '{"command": "ls'}]}
    with ScriptedServer(by_turn([lambda root: broken] + steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
        requests = server.chat_requests()
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.submitted
    assert traj.parse_failures == 1
    assert "could not be parsed" in traj.steps[0].executions[0].observation
    # The unparseable arguments are not sent back to the server (it would reject the request).
    assert requests[1]["messages"][2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert requests[1]["messages"][3]["role"] == "tool"


def test_unknown_tool_and_bad_arguments_are_observations_not_crashes(user_repo, tmp_path):
    steps = [lambda root: native("python", code="print(1)"),
             lambda root: native("str_replace_editor", command="explode", path=f"{root}/calc.py")] + fix_the_bug()
    with ScriptedServer(by_turn(steps)) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.submitted
    assert "Unknown tool `python`" in traj.steps[0].executions[0].observation
    assert "Invalid arguments for `str_replace_editor`" in traj.steps[1].executions[0].observation
    assert traj.parse_failures == 2


def test_three_replies_without_a_tool_call_end_the_run(user_repo, tmp_path):
    with ScriptedServer([{"content": "Hmm, let me think."}] * 5) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
        assert len(server.chat_requests()) == 3
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.format_error
    assert traj.parse_failures == 3 and outcome.branch is None
    assert traj.messages[-1]["role"] == "user" and "tool call" in traj.messages[-1]["content"]


def test_server_errors_are_retried(user_repo, tmp_path):
    replies = by_turn(fix_the_bug())
    failures = iter([{"status": 500}, {"status": 503}, {"drop": True}])

    def flaky(request):
        return next(failures, None) or replies(request)
    with ScriptedServer(flaky) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
        assert len(server.chat_requests()) == 5 + 3
    assert outcome.exit_status == ExitStatus.submitted
    assert len(load_trajectory(outcome.trajectory_path).steps) == 5


def test_server_that_keeps_failing_ends_with_model_error(user_repo, tmp_path):
    with ScriptedServer(lambda request: {"status": 500}) as server:
        request = request_for(user_repo, server, tmp_path)
        request.model.max_retries = 1
        outcome = run_task(request)
    assert outcome.exit_status == ExitStatus.model_error


def test_a_loop_is_detected_as_stuck(user_repo, tmp_path):
    with ScriptedServer(lambda request: native("bash", command="echo same")) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.stuck and len(traj.steps) == 3


def test_huge_output_is_clipped_head_and_tail(user_repo, tmp_path):
    command = "python3 -c \"print('HEAD' + 'x' * 500000 + 'TAIL')\""
    with ScriptedServer(by_turn([lambda root: native("bash", command=command)])) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, max_steps=1, observation_cap=4000))
    observation = load_trajectory(outcome.trajectory_path).steps[0].executions[0].observation
    assert outcome.exit_status == ExitStatus.max_steps
    assert len(observation) < 4400
    assert observation.startswith("HEAD") and observation.rstrip().endswith("TAIL")
    assert "elided" in observation


@pytest.mark.parametrize("shell", ["stateless", "persistent"])
def test_command_timeout_kills_everything_it_started(user_repo, tmp_path, shell):
    # (Escapes from the process group, like setsid, are the isolating sandboxes' job: tests/sandbox.)
    # Stateless: the timeout kills it all. Persistent: the command is interrupted, its background jobs live on
    # until the run ends, and then they are killed.
    marker = "nightowl-test-sleeper-7781"
    command = f"bash -c 'exec -a {marker} sleep 300' & (bash -c 'exec -a {marker} sleep 300' &) ; sleep 300"
    with ScriptedServer(by_turn([lambda root: native("bash", command=command)])) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, max_steps=1, command_timeout_s=1, shell=shell))
    observation = load_trajectory(outcome.trajectory_path).steps[0].executions[0].observation
    assert ("was killed" if shell == "stateless" else "was interrupted") in observation
    leftovers = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_context_window_is_respected_before_the_server_rejects(user_repo, tmp_path):
    big = "python3 -c \"print('y' * 3000)\""
    with ScriptedServer(lambda request: native("bash", command=big + f" # {len(request['messages'])}"),
                        max_model_len=3000) as server:
        outcome = run_task(request_for(user_repo, server, tmp_path, max_steps=50))
    traj = load_trajectory(outcome.trajectory_path)
    assert outcome.exit_status == ExitStatus.context_exceeded
    assert 1 <= len(traj.steps) < 10


def test_trajectory_is_written_after_every_step(user_repo, tmp_path):
    seen: list[int] = []
    with ScriptedServer(by_turn(fix_the_bug())) as server:
        run_task(request_for(user_repo, server, tmp_path),
                 progress=lambda t: seen.append(len(json.loads(
                     (tmp_path / t.run_id / "trajectory.json").read_text())["steps"])))
    assert seen == [0, 1, 2, 3, 4, 5]


def test_a_small_max_tokens_setting_is_not_mistaken_for_a_full_context(user_repo, tmp_path):
    with ScriptedServer(by_turn(fix_the_bug()), max_model_len=32768) as server:
        request = request_for(user_repo, server, tmp_path)
        request.model.max_tokens = 16
        outcome = run_task(request)
        assert {r["max_tokens"] for r in server.chat_requests()} == {16}
    assert outcome.exit_status == ExitStatus.submitted
