"""Scrub secrets that slipped into a trajectory (tokens, keys, private keys, hidden host paths), with counts.

The sandbox keeps secrets away from the agent; this is the second line: whatever got through anyway must not
become training data. Each kind of secret is replaced by a fixed placeholder and counted.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sandbox.environment import is_secret_name
from sandbox.policy import HIDDEN_HOME_ENTRIES

MIN_ENV_SECRET_LEN = 8
"""Shorter values of secret-named variables are too likely to match ordinary text."""

PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
                              re.S),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "openai_key": re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "slack_token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
    "bearer_token": re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/=-]{20,}"),
    "secret_assignment": re.compile(
        r"(?i)(?=[tspak])((?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY)\s*[=:]\s*[\"']?)(?!\[scrubbed:)"
        r"([^\s\"'<>\\]{8,})"),
    "hidden_path": re.compile(
        r"(?:/home/[^/\s]+|/root)/(?:" + "|".join(re.escape(e) for e in HIDDEN_HOME_ENTRIES) + r")(?:/[^\s\"'<>]*)?"),
}


# Cheap substring tests that every match must contain (checked on the lower-cased text): most observations hold
# no secret at all, and a substring test is far cheaper than a regex scan.
HINTS: dict[str, tuple[str, ...]] = {
    "private_key": ("private key",), "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "openai_key": ("sk-",), "huggingface_token": ("hf_",), "aws_access_key": ("akia", "asia"),
    "slack_token": ("xox",), "gitlab_token": ("glpat-",), "jwt": ("eyj",), "bearer_token": ("bearer ",),
    "secret_assignment": ("token", "secret", "passw", "key"), "hidden_path": ("/home/", "/root/"),
}


def placeholder(kind: str) -> str:
    return f"[scrubbed:{kind}]"


def env_secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of secret-named variables of whoever runs the export, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_ENV_SECRET_LEN and not v.isdigit()}
    return sorted(values, key=len, reverse=True)


class Scrubber:
    def __init__(self, extra_values: Iterable[str] = ()):
        self.values = [v for v in extra_values if v]
        self.counts: Counter[str] = Counter()

    def text(self, text: str) -> str:
        for value in self.values:
            if value in text:
                self.counts["environment_secret"] += text.count(value)
                text = text.replace(value, placeholder("environment_secret"))
        lowered = text.lower()
        for kind, pattern in PATTERNS.items():
            if any(hint in lowered for hint in HINTS[kind]):
                text = pattern.sub(lambda m, k=kind: self.replace(k, m), text)
        return text

    def replace(self, kind: str, match: re.Match[str]) -> str:
        self.counts[kind] += 1
        if kind == "secret_assignment":
            return match.group(1) + placeholder(kind)
        return placeholder(kind)

    def message(self, message: dict) -> dict:
        """A scrubbed copy: content, reasoning and tool-call arguments (still JSON strings)."""
        out = dict(message)
        for key in ("content", "reasoning_content", "reasoning"):
            if isinstance(out.get(key), str):
                out[key] = self.text(out[key])
        if out.get("tool_calls"):
            out["tool_calls"] = [self.tool_call(call) for call in out["tool_calls"]]
        return out

    def tool_call(self, call: dict) -> dict:
        function = dict(call.get("function") or {})
        if isinstance(function.get("arguments"), str):
            function["arguments"] = self.arguments(function["arguments"])
        return {**call, "function": function}

    def arguments(self, raw: str) -> str:
        """Scrub inside the decoded JSON so the string stays valid JSON; untouched arguments keep their bytes."""
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError:
            return self.text(raw)
        before = sum(self.counts.values())
        scrubbed = self.value(decoded)
        return raw if sum(self.counts.values()) == before else json.dumps(scrubbed, ensure_ascii=False)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value
