"""A checkpoint's chat template, read from its files (no tokenizer library needed).

transformers keeps it in `chat_template.jinja` (current), `chat_template.json` or `tokenizer_config.json`
(older saves; there it may be a list of named templates, e.g. `default` and `tool_use`).
"""
from __future__ import annotations

import json
from pathlib import Path

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
    """Templates that render past reasoning (GLM interleaved thinking, Qwen3) read `reasoning_content`."""
    return bool(template) and "reasoning_content" in template
