"""Turn an assistant message into tool calls: native `tool_calls` first, then text fallbacks.

Open models often answer in text: hermes-style `<tool_call>{...}</tool_call>` or a fenced JSON block.
Every failure is reported as a readable error for a corrective observation, never raised.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import BaseModel, Field

HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
FENCED_BLOCK = re.compile(r"```(?:json|tool_call|tool)?\s*\n(.*?)```", re.DOTALL)


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
    """native | hermes | fenced | none"""
    text: str = ""
    """The assistant's prose with any textual tool calls removed."""


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def decode_json_lenient(raw: str) -> Any:
    """json.loads that tolerates trailing junk after one complete value (a stray `}` or `</tool_call>`)."""
    text = raw.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        value, end = json.JSONDecoder().raw_decode(text)
        rest = text[end:].strip()
        if rest.startswith(("{", "[")):
            raise json.JSONDecodeError("several JSON values, ambiguous", text, end) from None
        return value


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


def call_from_object(obj: Any) -> ToolCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError('a tool call must be a JSON object with a "name" and "arguments"')
    raw_args = obj.get("arguments", obj.get("parameters", {}))
    args, raw_text, error = decode_arguments(raw_args)
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=args, raw_arguments=raw_text, error=error)


def parse_native(tool_calls: list[dict[str, Any]]) -> ParsedMessage:
    parsed = ParsedMessage(source="native")
    for tc in tool_calls:
        fn = tc.get("function") or {}
        args, raw_text, error = decode_arguments(fn.get("arguments"))
        parsed.calls.append(ToolCall(id=tc.get("id") or new_call_id(), name=fn.get("name") or "",
                                     arguments=args, raw_arguments=raw_text, error=error))
    return parsed


def parse_text_blocks(content: str, pattern: re.Pattern[str], source: str) -> ParsedMessage | None:
    matches = list(pattern.finditer(content))
    if not matches:
        return None
    parsed = ParsedMessage(source=source, text=pattern.sub("", content).strip())
    for m in matches:
        try:
            parsed.calls.append(call_from_object(decode_json_lenient(m.group(1))))
        except (json.JSONDecodeError, ValueError) as e:
            parsed.errors.append(f"could not parse the {source} tool call {m.group(1)[:200]!r}: "
                                 f"{getattr(e, 'msg', e)}")
    return parsed


def parse_message(message: dict[str, Any]) -> ParsedMessage:
    content = message.get("content") or ""
    if message.get("tool_calls"):
        parsed = parse_native(message["tool_calls"])
        parsed.text = content
        return parsed
    for pattern, source in ((HERMES_CALL, "hermes"), (FENCED_BLOCK, "fenced")):
        parsed = parse_text_blocks(content, pattern, source)
        if parsed is not None and (parsed.calls or source == "hermes"):
            return parsed
    return ParsedMessage(source="none", text=content)
