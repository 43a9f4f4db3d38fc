"""Render training text exactly as the serving engine renders the same messages and tools.

vLLM (0.32) does not hand the client's messages to the chat template as they are: it keeps only some keys,
turns content into a string, parses tool-call `arguments` JSON strings into objects (invalid or empty ones
become `{}`), maps `reasoning` to both `reasoning` and `reasoning_content`, and passes every tool through its
pydantic model (fixed key order, `description: null` when missing). `serving_messages` / `serving_tools` do the
same, then transformers' `apply_chat_template` renders them, as vLLM does. A test compares the result with the
real server's `/tokenize`. A template that does not render `tools` (SmolLM2's) is rendered through nightowl's
hermes-style wrapper (agent/chat_template.py), the template nightowl serves such a model with.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from agent.chat_template import with_tools_in_system_prompt
from sandbox.errors import UserError

THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"
REASONING_KEYS = ("reasoning_content", "reasoning")


class TemplateError(UserError, ValueError):
    """The chat template cannot give faithful training text for these messages."""


def reasoning_of(message: dict[str, Any]) -> str | None:
    for key in REASONING_KEYS:
        if isinstance(message.get(key), str) and message[key]:
            return message[key]
    return None


def fold_reasoning(message: dict[str, Any], keep_field: bool) -> dict[str, Any]:
    """An assistant message with its reasoning where the training template renders it.

    keep_field: the template reads `reasoning_content` itself (Qwen3-style): keep it there. Otherwise the
    reasoning goes before the content as a `<think>` block, the form such models produce it in.
    """
    reasoning = reasoning_of(message)
    out = {k: v for k, v in message.items() if k not in REASONING_KEYS}
    if reasoning is None or message.get("role") != "assistant":
        return out
    if keep_field:
        out["reasoning_content"] = reasoning
    else:
        out["content"] = THINK_OPEN + reasoning.strip("\n") + THINK_CLOSE + (out.get("content") or "")
    return out


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    raise TemplateError(f"message content must be a string or a list of text parts, not {type(content).__name__}")


def serving_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return {}
    return arguments if isinstance(arguments, dict) else {}


def serving_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": content_text(message.get("content"))}
    if role == "assistant":
        if message.get("tool_calls"):
            out["tool_calls"] = [
                {**call, "function": {**call["function"],
                                      "arguments": serving_arguments(call["function"].get("arguments"))}}
                for call in message["tool_calls"]]
        reasoning = reasoning_of(message)
        if reasoning is not None:
            out["reasoning"] = out["reasoning_content"] = reasoning
    elif role == "tool" and "tool_call_id" in message:
        out["tool_call_id"] = message["tool_call_id"]
    if isinstance(message.get("name"), str):
        out["name"] = message["name"]
    return out


def serving_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [serving_message(m) for m in messages]


def serving_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    out_fn: dict[str, Any] = {"name": function["name"], "description": function.get("description"),
                              "parameters": function.get("parameters")}
    for key in ("strict", "defer_loading"):
        if function.get(key) is not None:
            out_fn[key] = function[key]
    return {"type": tool.get("type", "function"), "function": out_fn}


def serving_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return None if tools is None else [serving_tool(t) for t in tools]


def vllm_request_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as a client sends them to vLLM: reasoning under `reasoning`, the key vLLM reads."""
    out = []
    for m in messages:
        reasoning = reasoning_of(m)
        m = {k: v for k, v in m.items() if k not in REASONING_KEYS}
        if reasoning is not None:
            m["reasoning"] = reasoning
        out.append(m)
    return out


@lru_cache(maxsize=16)
def tool_capable(template: str) -> str:
    return with_tools_in_system_prompt(template)


def serving_template(tokenizer: Any) -> str | None:
    """The chat template the server renders with: the tokenizer's own, wrapped when it does not render tools."""
    template = getattr(tokenizer, "chat_template", None)
    return tool_capable(template) if isinstance(template, str) else None


def render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
           add_generation_prompt: bool = False) -> str:
    """The text vLLM renders for these OpenAI messages and tools."""
    template = serving_template(tokenizer)
    return tokenizer.apply_chat_template(serving_messages(messages), tools=serving_tools(tools), tokenize=False,
                                         add_generation_prompt=add_generation_prompt,
                                         **({"chat_template": template} if template is not None else {}))


def end_token(tokenizer: Any) -> str:
    """The assistant end-of-turn token: `<|im_end|>` for ChatML (base Qwen models' EOS is `<|endoftext|>`)."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        return "<|im_end|>"
    if tokenizer.eos_token:
        return tokenizer.eos_token
    raise TemplateError("the tokenizer has neither <|im_end|> nor an EOS token: cannot tell where a turn ends")


def assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The full text and, per assistant message, the character span the model generated (end token included).

    Each span is what rendering messages[:k+1] adds to the generation prompt for messages[:k]. The template
    must be prefix-stable (earlier turns render the same as the conversation grows); otherwise the text the
    model saw while working differs from any single rendering and training on it would be unfaithful.
    """
    full = render(tokenizer, messages, tools)
    eot = end_token(tokenizer)
    spans = []
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt = render(tokenizer, messages[:k], tools, add_generation_prompt=True)
        turn = render(tokenizer, messages[:k + 1], tools)
        if not (turn.startswith(prompt) and full.startswith(turn)):
            raise TemplateError(
                f"the chat template is not prefix-stable at message {k}: rendering the conversation so far "
                "differs from rendering it whole, so the training text would not be what the model saw; use a "
                "template that renders earlier turns the same way every time")
        end = turn.rfind(eot)
        if end < len(prompt):
            raise TemplateError(f"assistant message {k} does not end with {eot} in the rendered text")
        spans.append((len(prompt), end + len(eot)))
    return full, spans
