"""Auxiliary answers from the teacher: the text inside `<output>...</output>`, else the whole reply."""
from __future__ import annotations

import re

OUTPUT_TAG = re.compile(r"<output>(.*?)</output>", re.DOTALL | re.IGNORECASE)
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def extract_output(reply: str | None) -> str:
    text = reply or ""
    found = OUTPUT_TAG.findall(text)
    if found:
        return found[-1].strip()
    return THINK_BLOCK.sub("", text).strip()


def parse_yes_no(reply: str | None) -> bool | None:
    """True for yes, False for no, None when the answer is neither."""
    words = re.findall(r"[a-z]+", extract_output(reply).lower())
    if not words:
        return None
    if words[0] in ("yes", "y"):
        return True
    if words[0] in ("no", "n"):
        return False
    return None
