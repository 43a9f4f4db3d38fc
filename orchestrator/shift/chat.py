"""One plain chat call without tools (the self-check and the synthetic PR of `nightowl generate`)."""
from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletion

from agent.model import ModelCallFailed, ModelConfig, shared_client


def chat_once(config: ModelConfig, messages: list[dict[str, Any]]) -> tuple[str, int]:
    """(the reply's text, total tokens). Retries and timeouts are the model client's."""
    client = shared_client(config)
    try:
        completion = client.post("/chat/completions", cast_to=ChatCompletion, body={
            "model": config.model, "messages": messages, "temperature": config.temperature,
            "max_tokens": config.max_tokens, **config.extra_body})
    except (openai.APIConnectionError, openai.APIStatusError) as e:
        raise ModelCallFailed(f"chat call failed after {config.max_retries} retries: {e}") from None
    text = completion.choices[0].message.content or "" if completion.choices else ""
    return text, completion.usage.total_tokens if completion.usage else 0
