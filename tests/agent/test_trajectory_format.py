"""The on-disk trajectory format is a contract with training and with older runs: guard it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.trajectory import TRAJECTORY_FORMAT, ExitStatus, load_trajectory

GOLDEN = Path(__file__).parent / "data" / "trajectory-v1.json"


def test_a_stored_v1_trajectory_still_loads_and_round_trips():
    traj = load_trajectory(GOLDEN)
    assert traj.format == TRAJECTORY_FORMAT and traj.exit_status == ExitStatus.submitted
    assert json.loads(traj.model_dump_json()) == json.loads(GOLDEN.read_text())


def test_the_messages_are_an_openai_chat_conversation():
    traj = load_trajectory(GOLDEN)
    roles = [m["role"] for m in traj.messages]
    assert roles[:3] == ["system", "user", "assistant"]
    for message in traj.messages:
        assert set(message) <= {"role", "content", "tool_calls", "tool_call_id"}
        for call in message.get("tool_calls", []):
            assert isinstance(json.loads(call["function"]["arguments"]), dict)
    tool_ids = [m["tool_call_id"] for m in traj.messages if m["role"] == "tool"]
    call_ids = [c["id"] for m in traj.messages for c in m.get("tool_calls", [])]
    assert tool_ids == call_ids


def test_other_formats_are_refused_clearly(tmp_path):
    data = json.loads(GOLDEN.read_text())
    data["format"] = "nightowl.trajectory/99"
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unsupported trajectory format"):
        load_trajectory(path)
