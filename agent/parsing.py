"""Turn an assistant message into tool calls: native `tool_calls` first, then the text formats open models write
when the server does not parse their calls, one small parser each, tried in order (`PARSERS`):

- hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (closing tag optional); Qwen2.5, Hermes.
- xml: `<function=NAME><parameter=P>value</parameter></function>`, bare or inside `<tool_call>`; Qwen3-Coder,
  SWE-agent's XML format.
- fenced: a fenced JSON block holding a call (or a list of them); many instruct models.
- bare_json: a reply that ends in bare JSON calls naming known tools (object, list, or one per line);
  Qwen2.5-Coder-1.5B (`tool_choice=auto`).
- fenced_bash: exactly one ```bash block, when every tool but `submit` is bash-like; mini-swe-agent's models.

The first parser that finds calls wins; if none does, the first one that recognised its syntax but failed gives
the error the model is told. Text inside `<think>...</think>` is never parsed. Every failure is reported as a
readable error for a corrective observation, never raised. What was parsed from text is kept (`recovered`) and
recorded on the step, so export can tell native calls from recovered ones.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
FENCED_BLOCK = re.compile(r"```(?:json|tool_call|tool)?\s*\n(.*?)```", re.DOTALL)
BASH_BLOCK = re.compile(r"```(?:bash|sh|shell)[ \t]*\n(.*?)```", re.DOTALL)
XML_FUNCTION = re.compile(
    r"(?:<tool_call>\s*)?<function=(?P<name>[^>\n]*)>(?P<body>.*?)"
    r"(?:</function>(?:\s*</tool_call>)?|</tool_call>|(?=<function=)|(?=<tool_call>)|\Z)", re.DOTALL)
XML_PARAMETER = re.compile(r"<parameter=(?P<name>[^>\n]*)>(?P<value>.*?)(?:</parameter>|(?=<parameter=)|\Z)",
                           re.DOTALL)
THINK = re.compile(r"<think>.*?(?:</think>|\Z)|\A(?:(?!<think>).)*?</think>", re.DOTALL)
EMPTY_WRAPPER = re.compile(r"<tool_call>\s*(?:</tool_call>|\Z)")
BARE_JSON_STARTS = 20
"""Line starts tried for bare JSON (a reply is prose, then the calls)."""
STRAY_CLOSING_FENCE = re.compile(r"\n[ \t]*```[ \t]*\Z")
LENIENT_JSON = json.JSONDecoder(strict=False)
"""Control characters (a raw tab or newline) inside strings are kept, not refused: small models copy `cat -n`
output, tabs included, into their arguments."""


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] | None
    """None when the arguments could not be decoded (see `error`)."""
    raw_arguments: str
    error: str | None = None


class ParsedMessage(BaseModel):
    calls: list[ToolCall] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    source: str = "none"
    """native, a name in `PARSERS`, or none"""
    text: str = ""
    """The assistant's prose with any textual tool calls removed."""
    recovered: str | None = None
    """The reply text the calls were parsed from (text parsers only; None for native calls)."""


@dataclass(frozen=True)
class ToolSet:
    """What the parsers know of the tools offered: their names and parameter schemas."""
    schemas: dict[str, dict[str, Any]] | None = None
    """name -> JSON schema of the parameters; None when unknown (any name may be a tool)."""

    @classmethod
    def from_specs(cls, specs: Sequence[dict[str, Any]] | None) -> "ToolSet":
        if specs is None:
            return cls()
        return cls({s["function"]["name"]: s["function"].get("parameters") or {} for s in specs})

    def known(self, name: str) -> bool:
        return self.schemas is None or name in self.schemas

    def parameter_type(self, tool: str, parameter: str) -> str | None:
        prop = ((self.schemas or {}).get(tool) or {}).get("properties", {}).get(parameter) or {}
        return prop.get("type")

    @property
    def bash_tool(self) -> str | None:
        """The bash-like tool (its only parameter a string `command`) when every tool but `submit` is one."""
        if not self.schemas:
            return None
        others = {name: schema for name, schema in self.schemas.items() if name != "submit"}
        bash_like = [name for name, schema in others.items()
                     if set((schema.get("properties") or {})) == {"command"}
                     and schema["properties"]["command"].get("type") == "string"]
        return bash_like[0] if others and len(bash_like) == len(others) else None


@dataclass
class Found:
    """One parser's reading of a reply: the calls, the errors, and the spans of the reply they came from."""
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def decode_json_lenient(raw: str) -> Any:
    """json.loads that tolerates trailing junk after one complete value (a stray `}` or `</tool_call>`)."""
    text = raw.strip()
    try:
        return LENIENT_JSON.decode(text)
    except json.JSONDecodeError:
        value, end = LENIENT_JSON.raw_decode(text)
        rest = text[end:].strip()
        if rest.startswith(("{", "[")):
            raise json.JSONDecodeError("several JSON values, ambiguous", text, end) from None
        return value


def decode_json_values(raw: str, strict_end: bool = False) -> list[Any]:
    """One or more JSON values separated by whitespace; after the last, trailing junk that starts no new value is
    ignored (an error when `strict_end`)."""
    values: list[Any] = []
    text, decoder, at = raw.strip(), LENIENT_JSON, 0
    while at < len(text):
        if values and text[at] not in "{[":
            if strict_end:
                raise json.JSONDecodeError("text after the JSON", text, at)
            break
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    if not values:
        raise json.JSONDecodeError("no JSON value", text, 0)
    return values


def decode_arguments(raw: Any) -> tuple[dict[str, Any] | None, str, str | None]:
    """Arguments may arrive as an object or as a JSON string (sometimes double-encoded)."""
    if isinstance(raw, dict):
        return raw, json.dumps(raw, ensure_ascii=False), None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}, "{}", None
    raw_text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        value = decode_json_lenient(raw_text)
        if isinstance(value, str):
            value = decode_json_lenient(value)
    except (json.JSONDecodeError, ValueError) as e:
        return None, raw_text, f"the arguments are not valid JSON ({e.msg if hasattr(e, 'msg') else e})"
    if not isinstance(value, dict):
        return None, raw_text, "the arguments must be a JSON object"
    return value, raw_text, None


def unwrap(obj: Any) -> Any:
    """`{"type": "function", "function": {...}}` (the OpenAI shape, echoed by small models) -> the inner object."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict) and "name" not in obj:
        return obj["function"]
    return obj


def call_from_object(obj: Any) -> ToolCall:
    obj = unwrap(obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError('a tool call must be a JSON object with a "name" and "arguments"')
    raw_args = obj.get("arguments", obj.get("parameters", {}))
    args, raw_text, error = decode_arguments(raw_args)
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=args, raw_arguments=raw_text, error=error)


def names_a_tool(obj: Any, tools: ToolSet) -> bool:
    """A JSON object that is a call: a tool's name, known (or, tools unknown, given with its arguments)."""
    obj = unwrap(obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return False
    if tools.schemas is None:
        return "arguments" in obj or "parameters" in obj
    return tools.known(obj["name"])


def calls_in_values(values: list[Any], tools: ToolSet) -> list[Any] | None:
    """The call objects of decoded JSON values (lists flattened), or None unless every one names a tool."""
    objects = [item for value in values for item in (value if isinstance(value, list) else [value])]
    return objects if objects and all(names_a_tool(o, tools) for o in objects) else None


def parse_native(tool_calls: list[dict[str, Any]]) -> ParsedMessage:
    parsed = ParsedMessage(source="native")
    for tc in tool_calls:
        fn = tc.get("function") or {}
        args, raw_text, error = decode_arguments(fn.get("arguments"))
        parsed.calls.append(ToolCall(id=tc.get("id") or new_call_id(), name=fn.get("name") or "",
                                     arguments=args, raw_arguments=raw_text, error=error))
    return parsed


# -- text parsers: (reply with thinking masked, tools) -> Found, or None when their syntax is not there ------------

def parse_hermes(content: str, tools: ToolSet) -> Found | None:
    matches = [m for m in HERMES_CALL.finditer(content) if not m.group(1).startswith("<function")]
    if not matches:
        return None
    found = Found()
    for m in matches:
        found.spans.append(m.span())
        try:
            objects = [o for v in decode_json_values(m.group(1)) for o in (v if isinstance(v, list) else [v])]
            found.calls.extend(call_from_object(o) for o in objects)
        except (json.JSONDecodeError, ValueError) as e:
            found.errors.append(f"could not parse the hermes tool call {m.group(1)[:200]!r}: {getattr(e, 'msg', e)}")
    return found


def xml_value(tool: str, parameter: str, raw: str, tools: ToolSet) -> Any:
    """A parameter's text as its schema type: strings verbatim (one newline after the tag and one before the
    closing tag dropped, as Qwen3-Coder writes them), numbers, booleans, arrays and objects decoded."""
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    kind = tools.parameter_type(tool, parameter)
    if kind in (None, "string"):
        return value
    text = value.strip()
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind in ("array", "object"):
            return json.loads(text)
    except ValueError:
        pass
    return value  # the schema check tells the model what is wrong


def parse_xml(content: str, tools: ToolSet) -> Found | None:
    matches = list(XML_FUNCTION.finditer(content))
    if not matches:
        return None
    found = Found()
    for m in matches:
        name = m.group("name").strip()
        args = {p.group("name").strip(): xml_value(name, p.group("name").strip(), p.group("value"), tools)
                for p in XML_PARAMETER.finditer(m.group("body"))}
        found.spans.append(m.span())
        found.calls.append(ToolCall(id=new_call_id(), name=name, arguments=args,
                                    raw_arguments=json.dumps(args, ensure_ascii=False)))
    return found


def unknown_tool_error(values: list[Any], tools: ToolSet) -> str | None:
    """A call-shaped object (a name and arguments) naming a tool that is not offered: the model meant a call, so
    it is told which tools there are instead of being told it made none (Qwen2.5-Coder-1.5B writes
    `{"name": "str_replace", ...}` for `str_replace_editor`)."""
    for value in values:
        for obj in (value if isinstance(value, list) else [value]):
            obj = unwrap(obj)
            if (isinstance(obj, dict) and isinstance(obj.get("name"), str) and tools.schemas is not None
                    and ("arguments" in obj or "parameters" in obj) and not tools.known(obj["name"])):
                return (f"{obj['name'][:80]!r} is not a tool here; the tools are "
                        f"{', '.join(sorted(tools.schemas))}")
    return None


def parse_fenced_json(content: str, tools: ToolSet) -> Found | None:
    found = Found()
    for m in FENCED_BLOCK.finditer(content):
        try:
            values = decode_json_values(m.group(1))
        except (json.JSONDecodeError, ValueError):
            continue  # a code block that is not a call
        objects = calls_in_values(values, tools)
        if objects:
            found.spans.append(m.span())
            found.calls.extend(call_from_object(o) for o in objects)
        elif error := unknown_tool_error(values, tools):
            found.errors.append(error)
    return found if found.calls or found.errors else None


def parse_bare_json(content: str, tools: ToolSet) -> Found | None:
    starts = [m.start(1) for m in re.finditer(r"(?:\A|\n)[ \t]*([{\[])", content)][:BARE_JSON_STARTS]
    # a closing fence whose opening one is missing may follow the calls (Qwen2.5-Coder-1.5B writes them so)
    body = STRAY_CLOSING_FENCE.sub("", content.rstrip())
    for start in starts:
        try:
            objects = calls_in_values(decode_json_values(body[start:], strict_end=True), tools)
        except (json.JSONDecodeError, ValueError):
            continue
        if objects:
            return Found(calls=[call_from_object(o) for o in objects], spans=[(start, len(content.rstrip()))])
    return None


def parse_fenced_bash(content: str, tools: ToolSet) -> Found | None:
    bash = tools.bash_tool
    blocks = list(BASH_BLOCK.finditer(content)) if bash else []
    if not blocks or bash is None:
        return None
    if len(blocks) > 1:
        return Found(errors=[f"found {len(blocks)} ```bash blocks; reply with exactly one command block"])
    command = blocks[0].group(1).strip("\n")
    args = {"command": command}
    return Found(calls=[ToolCall(id=new_call_id(), name=bash, arguments=args, raw_arguments=json.dumps(args))],
                 spans=[blocks[0].span()])


TextParser = Callable[[str, ToolSet], Found | None]
PARSERS: tuple[tuple[str, TextParser], ...] = (
    ("hermes", parse_hermes),
    ("xml", parse_xml),
    ("fenced", parse_fenced_json),
    ("bare_json", parse_bare_json),
    ("fenced_bash", parse_fenced_bash),
)


def mask_thinking(content: str) -> str:
    """`content` with every `<think>` block blanked out (same length, so spans still point into `content`)."""
    return THINK.sub(lambda m: " " * len(m.group()), content) if "think>" in content else content


def parse_text(content: str, tools: ToolSet) -> ParsedMessage:
    visible = mask_thinking(content)
    failed: tuple[str, Found] | None = None
    for source, parser in PARSERS:
        found = parser(visible, tools)
        if found is None:
            continue
        if found.calls:
            spans = sorted(found.spans)
            text, at = "", 0
            for start, end in spans:
                text, at = text + content[at:start], end
            text = EMPTY_WRAPPER.sub("", text + content[at:]).strip()
            return ParsedMessage(calls=found.calls, errors=found.errors, source=source, text=text,
                                 recovered="\n".join(content[start:end] for start, end in spans))
        failed = failed or (source, found)
    if failed:
        return ParsedMessage(errors=failed[1].errors, source=failed[0], text=content)
    return ParsedMessage(source="none", text=content)


def parse_message(message: dict[str, Any], tools: Sequence[dict[str, Any]] | None = None) -> ParsedMessage:
    """`tools`: the OpenAI tool specs offered (for known names, parameter types and the bash-only case)."""
    content = message.get("content") or ""
    if message.get("tool_calls"):
        parsed = parse_native(message["tool_calls"])
        parsed.text = content
        return parsed
    return parse_text(content, ToolSet.from_specs(tools))
