from agent.parsing import decode_arguments, parse_message


def test_native_calls_with_string_and_object_arguments():
    parsed = parse_message({"content": None, "tool_calls": [
        {"id": "a", "function": {"name": "bash", "arguments": '{"command": "ls"}'}},
        {"id": "b", "function": {"name": "bash", "arguments": {"command": "pwd"}}}]})
    assert parsed.source == "native"
    assert [c.arguments for c in parsed.calls] == [{"command": "ls"}, {"command": "pwd"}]
    assert [c.id for c in parsed.calls] == ["a", "b"]


def test_trailing_junk_after_one_json_value_is_tolerated():
    assert decode_arguments('{"command": "ls"}}')[0] == {"command": "ls"}
    assert decode_arguments('{"command": "ls"}</tool_call>')[0] == {"command": "ls"}
    assert decode_arguments('"{\\"command\\": \\"ls\\"}"')[0] == {"command": "ls"}  # double-encoded


def test_ambiguous_or_broken_arguments_are_errors_not_exceptions():
    for raw in ('{"command": "ls"}{"command": "rm"}', '{"command": "ls', "[1, 2]"):
        args, _, error = decode_arguments(raw)
        assert args is None and error


def test_hermes_text_calls_including_unclosed_and_parameters_key():
    parsed = parse_message({"content": 'Looking.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n'
                                       '</tool_call>\n<tool_call>{"name": "submit", "parameters": {}}'})
    assert parsed.source == "hermes" and parsed.text == "Looking."
    assert [(c.name, c.arguments) for c in parsed.calls] == [("bash", {"command": "ls"}), ("submit", {})]


def test_hermes_call_that_is_not_json_is_reported():
    parsed = parse_message({"content": "<tool_call>bash ls</tool_call>"})
    assert parsed.calls == [] and "could not parse" in parsed.errors[0]


def test_fenced_json_block():
    parsed = parse_message({"content": 'I will run:\n```json\n{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}\n```'})
    assert parsed.source == "fenced" and parsed.calls[0].arguments == {"command": "ls"}


def test_plain_text_and_code_blocks_are_no_call():
    assert parse_message({"content": "Just thinking"}).source == "none"
    assert parse_message({"content": "```python\nprint(1)\n```"}).calls == []
