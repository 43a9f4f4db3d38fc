"""The model client: any OpenAI-compatible chat-completions endpoint (normally vLLM)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

from agent.chat_template import read_chat_template, template_uses_reasoning, tool_format_note
from agent.trajectory import Usage
from sandbox.errors import InfrastructureError, NightowlError, UserError


class SamplingOptions(BaseModel):
    """How requests are made and replies sampled; the defaults here are the only ones (settings reuse them)."""
    api_key_env: str = "NIGHTOWL_API_KEY"
    """Environment variable holding the API key; vLLM without --api-key accepts any value."""
    temperature: float = 0.0
    max_tokens: int = Field(default=4096, gt=0)
    tool_choice: Literal["auto", "required"] = "auto"
    timeout_s: float = Field(default=600.0, gt=0)
    """Hard limit for one request, retries excluded."""
    max_retries: int = Field(default=6, ge=0)
    """Retries with exponential backoff on 5xx, 429, timeouts and dropped connections."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Sent as-is, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3."""
    reasoning_in_history: bool | None = None
    """Send past turns' `reasoning_content` back (templates that render it: GLM interleaved thinking, Qwen3).
    None: decided at start-up from the served checkpoint's chat template when the server's model is a local
    directory, else off. Either way the reasoning stays in the trajectory."""


REASONING_KEY = "reasoning_content"
"""Where an assistant message keeps its reasoning, in the trajectory and in requests (chat templates read it)."""
REPLY_REASONING_KEYS = ("reasoning", "reasoning_content")
"""vLLM >= 0.10 returns `reasoning`; older servers (and some others) `reasoning_content`."""


class ModelConfig(SamplingOptions):
    base_url: str
    """The server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (a missing /v1 is added)."""
    model: str
    """The served model name (or a LoRA adapter name loaded into the server)."""


class ModelResponse(BaseModel):
    message: dict[str, Any]
    """The assistant message as the server returned it (role, content, tool_calls), its reasoning (if any) as
    `reasoning_content`."""
    raw: dict[str, Any]
    usage: Usage
    finish_reason: str | None
    duration_s: float


class ModelUnavailable(InfrastructureError):
    """The server cannot be reached, or does not serve the model: a set-up problem, not a run problem."""


class ModelAuthRefused(UserError):
    """The server refused the API key (401/403): the user sets the right key."""


class ContextWindowExceeded(NightowlError):
    pass


class ModelCallFailed(InfrastructureError):
    pass


def auth_refused_message(url: str, status: int, api_key_env: str) -> str:
    state = "is not set" if not os.environ.get(api_key_env) else "holds a key the server refuses"
    return (f"the model server at {url} answered {status} (unauthorized): {api_key_env} {state}; set it to the "
            "key the server was started with (vLLM's --api-key), or pass --api-key-env NAME")


class Model(Protocol):
    config: ModelConfig

    def query(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              max_tokens: int | None = None) -> ModelResponse: ...


def reply_message(message: dict[str, Any]) -> dict[str, Any]:
    """The parts of a returned assistant message the agent keeps, reasoning under REASONING_KEY."""
    kept = {k: v for k, v in message.items() if k in ("content", "tool_calls")}
    reasoning = next((message[k] for k in REPLY_REASONING_KEYS if isinstance(message.get(k), str) and message[k]), None)
    if reasoning:
        kept[REASONING_KEY] = reasoning
    return {"role": "assistant", **kept}


def request_messages(messages: list[dict[str, Any]], with_reasoning: bool) -> list[dict[str, Any]]:
    """The history as sent: past reasoning is dropped unless the chat template renders it."""
    if with_reasoning:
        return messages
    return [{k: v for k, v in m.items() if k != REASONING_KEY} if REASONING_KEY in m else m for m in messages]


def normalize_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


_clients: dict[tuple[str, str, float, int], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def shared_client(config: ModelConfig) -> openai.OpenAI:
    """One client (one connection pool) per endpoint, key, timeout and retry count, shared by every rollout.

    The timeout is openai's own type: openai >= 3 is built on httpx2 and refuses an `httpx.Timeout`.
    """
    key = os.environ.get(config.api_key_env) or "EMPTY"
    ident = (normalize_base_url(config.base_url), key, config.timeout_s, config.max_retries)
    with _clients_lock:
        client = _clients.get(ident)
        if client is None:
            client = _clients[ident] = openai.OpenAI(
                base_url=ident[0], api_key=key, max_retries=config.max_retries,
                timeout=openai.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)))
        return client


class OpenAIChatModel:
    def __init__(self, config: ModelConfig):
        self.config = config
        self.client = shared_client(config)

    def served_model(self) -> dict[str, Any]:
        """Check /v1/models at start-up; returns the model card (vLLM includes `max_model_len`)."""
        url = normalize_base_url(self.config.base_url)
        try:
            cards = self.client.with_options(max_retries=1, timeout=15.0).models.list().data
        except openai.APIConnectionError:
            raise ModelUnavailable(f"cannot reach the model server at {url} (is it running? "
                                   "`nightowl serve --model M` starts one, or omit --base-url)") from None
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise ModelAuthRefused(auth_refused_message(url, e.status_code, self.config.api_key_env)) from None
            raise ModelUnavailable(f"the model server at {url} answered {e.status_code} on /models") from None
        ids = [c.id for c in cards]
        if self.config.model not in ids:
            raise ModelUnavailable(f"model {self.config.model!r} is not served by {url}; it serves: "
                                   f"{', '.join(ids) or 'nothing'} (pass one of these to --model)")
        card = next(c for c in cards if c.id == self.config.model).model_dump()
        if self.config.reasoning_in_history is None:
            self.config = self.config.model_copy(update={"reasoning_in_history": served_template_uses_reasoning(card)})
        return card

    def query(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
              max_tokens: int | None = None) -> ModelResponse:
        start = time.monotonic()
        try:
            # `client.post` rather than `chat.completions.create`: the latter walks every message through
            # openai's TypedDict transform, which costs ~0.2 ms per message on every step (75 ms at 400
            # messages) and made the loop O(n^2). Retries, timeouts and error types are the same.
            completion = self.client.post("/chat/completions", cast_to=ChatCompletion, body={
                "model": self.config.model, "tools": tools,
                "messages": request_messages(messages, bool(self.config.reasoning_in_history)),
                "tool_choice": self.config.tool_choice, "temperature": self.config.temperature,
                "max_tokens": max_tokens or self.config.max_tokens, **self.config.extra_body,
            })
        except openai.BadRequestError as e:
            text = str(e).lower()
            if "context length" in text or "maximum context" in text or "too long" in text:
                raise ContextWindowExceeded(str(e)) from None
            raise ModelCallFailed(f"the server rejected the request: {e}") from None
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            raise ModelCallFailed(f"model call failed after {self.config.max_retries} retries: {e}") from None
        raw = completion.model_dump(exclude_none=True)
        choice = completion.choices[0]
        message = reply_message(choice.message.model_dump(exclude_none=True))
        usage = completion.usage
        return ModelResponse(
            message=message, raw=raw, finish_reason=choice.finish_reason, duration_s=time.monotonic() - start,
            usage=Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                        total_tokens=usage.total_tokens) if usage else Usage(),
        )


def served_template(card: dict[str, Any]) -> str | None:
    """vLLM's model card names the checkpoint in `root` (`parent` for an adapter): its template, if local."""
    for key in ("root", "parent"):
        directory = card.get(key)
        if isinstance(directory, str) and Path(directory).is_dir():
            return read_chat_template(Path(directory))
    return None


def served_template_uses_reasoning(card: dict[str, Any]) -> bool:
    template = served_template(card)
    return template_uses_reasoning(template) if template is not None else False


def served_tool_format(card: dict[str, Any]) -> str | None:
    """How the tools reach this model when its template does not render them (None: the template does, or the
    checkpoint is not on this machine)."""
    return tool_format_note(served_template(card))
