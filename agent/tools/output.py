"""Keeping observations within the context budget."""
from __future__ import annotations


def clip_middle(text: str, cap: int) -> str:
    """Keep the head and tail of `text` within `cap` characters, with a note saying what was elided."""
    if len(text) <= cap:
        return text
    half = cap // 2
    elided = len(text) - 2 * half
    note = (f"\n<response clipped><NOTE>{elided} characters were elided from the middle of this output. "
            "Narrow the command (grep -n, head, tail, sed -n 'A,Bp') to see the part you need.</NOTE>\n")
    return text[:half] + note + text[-half:]
