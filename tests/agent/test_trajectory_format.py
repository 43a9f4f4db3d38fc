"""The on-disk trajectory format is a contract with training and with older runs: guard it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.file_format import FileFormat, FileFormatError, NewerFormatError
from agent.trajectory import TRAJECTORY_FORMAT, ExitStatus, load_trajectory, read_trajectory_data

GOLDEN = Path(__file__).parent / "data" / "trajectory-v1.json"


def test_a_stored_v1_trajectory_loads_and_round_trips():
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


def test_a_newer_format_is_refused_in_one_line(tmp_path):
    data = json.loads(GOLDEN.read_text())
    data["format"] = "nightowl.trajectory/99"
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NewerFormatError) as refused:
        load_trajectory(path)
    assert str(refused.value) == (f"{path} was written by a newer nightowl (format 99, this one reads up to 1): "
                                  "upgrade nightowl")
    with pytest.raises(NewerFormatError):
        read_trajectory_data(path)


def test_another_kind_of_file_is_refused(tmp_path):
    data = json.loads(GOLDEN.read_text())
    data["format"] = "nightowl.dataset/1"
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match="is not a nightowl trajectory file"):
        load_trajectory(path)
    path.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="is not a nightowl trajectory file"):
        read_trajectory_data(path)


def test_a_trajectory_without_a_format_field_reads_as_version_1(tmp_path):
    data = json.loads(GOLDEN.read_text())
    del data["format"]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    assert load_trajectory(path).format == TRAJECTORY_FORMAT
    assert read_trajectory_data(path)["run_id"] == data["run_id"]


def test_the_tolerant_reader_shows_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "t.json"
    path.write_bytes(b'{"format": "nightowl.trajectory/1", "patch": "caf\xe9"}')
    with pytest.raises(UnicodeDecodeError):
        read_trajectory_data(path)
    assert read_trajectory_data(path, undecodable="replace")["patch"] == "caf\ufffd"


def test_a_file_format_stamps_checks_and_reads_lines(tmp_path):
    rounds = FileFormat("round", 2)
    assert rounds.stamp({"round": 1, "format": "old"}) == {"format": "nightowl.round/2", "round": 1}
    path = tmp_path / "rounds.jsonl"
    path.write_text('{"round": 1}\n' + rounds.dumps({"round": 2}) + "\n")
    assert rounds.load_lines(path) == [{"round": 1}, {"format": "nightowl.round/2", "round": 2}]
    assert rounds.version_of({"round": 1}, path) == 1
    with path.open("a") as f:
        f.write(FileFormat("round", 3).dumps({"round": 3}) + "\n")
    with pytest.raises(NewerFormatError, match=r"\(format 3, this one reads up to 2\): upgrade nightowl$"):
        rounds.load_lines(path)
    for tag in ("nightowl.round/x", "nightowl.round/0", "nightowl.eval/1", 7):
        with pytest.raises(FileFormatError, match="is not a nightowl round file"):
            rounds.version_of({"format": tag}, path)
