"""Reasoning round trip: a reply's reasoning is kept in the trajectory and sent back only to templates that read it."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.loop import AgentConfig
from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.scripted_server import ScriptedServer
from agent.trajectory import ExitStatus, load_trajectory
from tests.agent.scripts import repo_root
from tests.orchestrator.serving.checkpoint_fixtures import TEMPLATES, make_checkpoint

THOUGHTS = ["The bug is probably in calc.py; read it first.", "Done reading; submit.", "Reviewed; submit again."]


def replies(reasoning_key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """bash, submit, submit (after the review prompt), each with reasoning under `reasoning_key` (vLLM 0.32: `reasoning`; older: `reasoning_content`)."""
    def respond(request: dict[str, Any]) -> dict[str, Any]:
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        repo_root(request)
        call = {"name": "bash", "arguments": {"command": "cat calc.py"}} if turn == 0 else {"name": "submit",
                                                                                            "arguments": {}}
        return {"content": "", reasoning_key: THOUGHTS[min(turn, 2)], "tool_calls": [call]}
    return respond


def run(user_repo: Path, tmp_path: Path, server: ScriptedServer, **model: Any):
    request = RunRequest(repo=user_repo, task="add() subtracts; fix it.", sandbox="local", out_dir=tmp_path / "runs",
                         model=ModelConfig(base_url=server.base_url, model=server.model, max_retries=1, timeout_s=30,
                                           **model),
                         agent=AgentConfig(max_steps=4, command_timeout_s=20))
    outcome = run_task(request)
    return load_trajectory(outcome.trajectory_path)


def assistant_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["role"] == "assistant"]


@pytest.mark.parametrize("reasoning_key", ["reasoning", "reasoning_content"])
def test_template_that_reads_reasoning_gets_it_back(user_repo: Path, tmp_path: Path, reasoning_key: str) -> None:
    model_dir = make_checkpoint(tmp_path / "glm", "glm4_moe", TEMPLATES["glm"])
    with ScriptedServer(replies(reasoning_key), root=str(model_dir)) as server:
        traj = run(user_repo, tmp_path, server)
    assert traj.exit_status == ExitStatus.submitted
    assert [m["reasoning_content"] for m in assistant_turns(traj.messages)] == THOUGHTS
    second = server.chat_requests()[1]["messages"]
    assert assistant_turns(second)[0]["reasoning_content"] == THOUGHTS[0]
    assert traj.messages[:len(second)] == second  # what was sent is the trajectory's history


def test_template_without_reasoning_does_not_get_it(user_repo: Path, tmp_path: Path) -> None:
    model_dir = make_checkpoint(tmp_path / "hermes", "qwen2", TEMPLATES["hermes"])
    with ScriptedServer(replies("reasoning"), root=str(model_dir)) as server:
        traj = run(user_repo, tmp_path, server)
    assert [m["reasoning_content"] for m in assistant_turns(traj.messages)] == THOUGHTS
    second = server.chat_requests()[1]["messages"]
    assert "reasoning_content" not in assistant_turns(second)[0]
    assert [{k: v for k, v in m.items() if k != "reasoning_content"} for m in traj.messages[:len(second)]] == second


def test_caller_setting_wins_over_the_server(user_repo: Path, tmp_path: Path) -> None:
    with ScriptedServer(replies("reasoning")) as server:  # no local checkpoint behind it: off by default
        run(user_repo, tmp_path / "default", server)
        assert "reasoning_content" not in assistant_turns(server.chat_requests()[1]["messages"])[0]
    with ScriptedServer(replies("reasoning")) as server:
        run(user_repo, tmp_path / "on", server, reasoning_in_history=True)
        assert assistant_turns(server.chat_requests()[1]["messages"])[0]["reasoning_content"] == THOUGHTS[0]


def test_think_in_content_is_left_alone(user_repo: Path, tmp_path: Path) -> None:
    """SERA-style models keep <think> in `content` (no reasoning parser): nothing moves."""
    def respond(request: dict[str, Any]) -> dict[str, Any]:
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        name = "bash" if turn == 0 else "submit"  # submitted twice: the first gets the review prompt
        return {"content": f"<think>\nstep {turn}\n</think>\n\nCalling {name}.",
                "tool_calls": [{"name": name, "arguments": {"command": "ls"} if turn == 0 else {}}]}
    with ScriptedServer(respond) as server:
        traj = run(user_repo, tmp_path, server, reasoning_in_history=True)
    turns = assistant_turns(traj.messages)
    assert [t["content"] for t in turns] == [f"<think>\nstep {i}\n</think>\n\nCalling {name}."
                                             for i, name in enumerate(["bash", "submit", "submit"])]
    assert all("reasoning_content" not in t for t in turns)


def test_the_run_records_how_tools_reach_a_model_whose_template_does_not_render_them(user_repo: Path,
                                                                                     tmp_path: Path) -> None:
    from agent.chat_template import renders_tools, with_tools_in_system_prompt

    plain = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    assert not renders_tools(plain)  # like SmolLM2's and Gemma 3's own templates
    wrapped = make_checkpoint(tmp_path / "wrapped", "llama", with_tools_in_system_prompt(plain))
    with ScriptedServer(replies("reasoning"), root=str(wrapped)) as server:
        traj = run(user_repo, tmp_path / "a", server)
    assert "nightowl's wrapper puts the tool schema in the system prompt" in traj.settings["tool_format"]
    bare = make_checkpoint(tmp_path / "bare", "llama", plain)
    with ScriptedServer(replies("reasoning"), root=str(bare)) as server:
        traj = run(user_repo, tmp_path / "b", server)
    assert "the model never sees the tool schema" in traj.settings["tool_format"]
    own = make_checkpoint(tmp_path / "own", "qwen2", "{% if tools %}{{ tools | tojson }}{% endif %}" + plain)
    with ScriptedServer(replies("reasoning"), root=str(own)) as server:
        traj = run(user_repo, tmp_path / "c", server)
    assert "tool_format" not in traj.settings  # a template that renders tools needs no note
