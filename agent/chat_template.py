"""A checkpoint's chat template, read from its files (no tokenizer library needed).

transformers keeps it in `chat_template.jinja` (current), `chat_template.json` or `tokenizer_config.json`
(older saves; there it may be a list of named templates, e.g. `default` and `tool_use`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


def template_from_file(path: Path) -> str | None:
    """The template text in one of TEMPLATE_FILES; named templates are joined (all of them can be used)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if path.suffix == ".jinja":
        return raw.decode("utf-8", errors="replace")
    try:
        value = json.loads(raw).get("chat_template")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, list):
        value = "\n".join(t.get("template", "") for t in value if isinstance(t, dict)) or None
    return value if isinstance(value, str) else None


def read_chat_template(directory: Path) -> str | None:
    """The chat template saved in a local checkpoint directory, or None."""
    for name in TEMPLATE_FILES:
        if (template := template_from_file(Path(directory) / name)) is not None:
            return template
    return None


def template_uses_reasoning(template: str | None) -> bool:
    """Templates that render past reasoning (GLM interleaved thinking, Qwen3) read `reasoning_content` (for
    nightowl's tools wrapper: the model's own template inside it does, the wrapper only passes it on)."""
    if is_tools_wrapper(template):
        template = template.partition(WRAPPER_END)[2]  # type: ignore[union-attr]
    return template is not None and "reasoning_content" in template


TOOLS_WRAPPER_MARK = "nightowl: tools in the system prompt"
"""The first words of the comment that opens every template `with_tools_in_system_prompt` writes."""

# Hermes-style tools (the format Qwen2.5 and NousHermes templates use), done by rewriting the message list
# before the model's own template runs: the tool schema joins the system prompt, each assistant turn's calls
# follow its text as <tool_call>{"name": ..., "arguments": ...}</tool_call> lines, and a run of tool results
# becomes one user turn of <tool_response> blocks. Every message keeps rendering the same wherever it sits
# (prefix-stable, as the assistant-only mask needs). Whitespace control on every tag: the text does not depend
# on trim_blocks. vLLM's hermes parser reads the calls back from the reply's text.
TOOLS_WRAPPER = (
    "{#- " + TOOLS_WRAPPER_MARK + ": this model's own chat template (below, unchanged) does not render `tools`; "
    "this preamble puts the tool schema into the system prompt and renders tool calls and results "
    "hermes-style (<tool_call>, <tool_response>) as text. -#}\n"
    "{%- set nightowl = namespace(messages=[], tools='', after_tool=false, text='') -%}\n"
    "{%- if tools -%}\n"
    "{%- set nightowl.tools = '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -%}\n"
    "{%- for tool in tools -%}{%- set nightowl.tools = nightowl.tools + '\\n' + (tool | tojson) -%}{%- endfor -%}\n"
    "{%- set nightowl.tools = nightowl.tools + '\\n</tools>\\n\\nFor each function call, return a json object with "
    "function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call>' -%}\n"
    "{%- if not messages or messages[0].role != 'system' -%}\n"
    "{%- set nightowl.messages = [{'role': 'system', 'content': nightowl.tools}] -%}\n"
    "{%- endif -%}\n"
    "{%- endif -%}\n"
    "{%- for message in messages -%}\n"
    "{%- set content = message.content if message.content is string else '' -%}\n"
    "{%- if message.role == 'system' and loop.first and tools -%}\n"
    "{%- set nightowl.messages = nightowl.messages + [{'role': 'system', 'content': "
    "(content + '\\n\\n' if content else '') + nightowl.tools}] -%}\n"
    "{%- elif message.role == 'assistant' -%}\n"
    "{%- set nightowl.text = content | trim if message.tool_calls else content -%}\n"
    "{%- for call in message.tool_calls or [] -%}\n"
    "{%- set fn = call.function if call.function is defined else call -%}\n"
    "{%- set nightowl.text = nightowl.text + ('\\n' if nightowl.text else '') + '<tool_call>\\n{\"name\": ' "
    "+ (fn.name | tojson) + ', \"arguments\": ' + (fn.arguments if fn.arguments is string else "
    "(fn.arguments | tojson)) + '}\\n</tool_call>' -%}\n"
    "{%- endfor -%}\n"
    "{%- if message.reasoning_content is string -%}\n"
    "{%- set nightowl.messages = nightowl.messages + [{'role': 'assistant', 'content': nightowl.text, "
    "'reasoning_content': message.reasoning_content}] -%}\n"
    "{%- else -%}\n"
    "{%- set nightowl.messages = nightowl.messages + [{'role': 'assistant', 'content': nightowl.text}] -%}\n"
    "{%- endif -%}\n"
    "{%- elif message.role == 'tool' and nightowl.after_tool -%}\n"
    "{%- set nightowl.messages = nightowl.messages[:-1] + [{'role': 'user', 'content': "
    "nightowl.messages[-1].content + '\\n<tool_response>\\n' + content + '\\n</tool_response>'}] -%}\n"
    "{%- elif message.role == 'tool' -%}\n"
    "{%- set nightowl.messages = nightowl.messages + [{'role': 'user', 'content': "
    "'<tool_response>\\n' + content + '\\n</tool_response>'}] -%}\n"
    "{%- else -%}\n"
    "{%- set nightowl.messages = nightowl.messages + [{'role': message.role, 'content': content}] -%}\n"
    "{%- endif -%}\n"
    "{%- set nightowl.after_tool = message.role == 'tool' -%}\n"
    "{%- endfor -%}\n"
    "{%- set messages = nightowl.messages -%}\n"
)
WRAPPER_END = "{%- set messages = nightowl.messages -%}\n"


def template_variables(template: str) -> set[str] | None:
    """The variables a template reads from its context; None when it does not parse as Jinja here."""
    import jinja2
    import jinja2.ext
    from jinja2 import meta, nodes

    class Generation(jinja2.ext.Extension):  # transformers' {% generation %} ... {% endgeneration %}
        tags = {"generation"}

        def parse(self, parser: Any) -> list[nodes.Node]:
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = jinja2.Environment(extensions=[Generation, jinja2.ext.loopcontrols])
    try:
        return set(meta.find_undeclared_variables(env.parse(template)))
    except jinja2.TemplateSyntaxError:
        return None


def renders_tools(template: str | None) -> bool:
    """The template reads `tools` (Qwen2.5, Qwen3, Llama 3.1, the tiny model's); SmolLM2's and Gemma 3's do not."""
    if not template:
        return False
    variables = template_variables(template)
    return "tools" in variables if variables is not None else re.search(r"\btools\b", template) is not None


def is_tools_wrapper(template: str | None) -> bool:
    return template is not None and TOOLS_WRAPPER_MARK in template[:200]


def with_tools_in_system_prompt(template: str) -> str:
    """A template that renders tools hermes-style around `template`, or `template` itself if it renders them."""
    if renders_tools(template):
        return template
    return TOOLS_WRAPPER + template


def tool_format_note(template: str | None) -> str | None:
    """One line saying how tools reach the model, for templates that do not render them themselves."""
    if is_tools_wrapper(template):
        return ("the model's own chat template does not render tools: nightowl's wrapper puts the tool schema in "
                "the system prompt and renders calls and results hermes-style (<tool_call>, <tool_response>)")
    if template and not renders_tools(template):
        return ("the chat template does not render tools: the model never sees the tool schema unless it is served "
                "with nightowl's hermes-style wrapper (`nightowl model import` writes it into imported checkpoints)")
    return None
