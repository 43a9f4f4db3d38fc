"""Keeping observations within the context budget: one cut, on whole lines, with one note saying what is missing."""
from __future__ import annotations

OUTPUT_NOTE = ("\n<response clipped><NOTE>{elided} characters ({lines} lines) were elided from the middle of this "
               "output. Narrow the command (grep -n, head, tail, sed -n 'A,Bp') to see the part you need.</NOTE>\n")


def clip_middle(text: str, cap: int) -> str:
    """Keep the head and tail of `text` within `cap` characters, cutting between lines where there are any."""
    if len(text) <= cap:
        return text
    reserve = len(OUTPUT_NOTE.format(elided=len(text), lines=text.count("\n")))
    half = max(0, (cap - reserve) // 2)
    head, tail = text[:half], text[len(text) - half:] if half else ""
    if "\n" in head:
        head = head[:head.rindex("\n") + 1]
    if "\n" in tail[:-1]:  # a newline that only ends the output is not a line boundary to cut at
        tail = tail[tail.index("\n") + 1:]
    middle = text[len(head):len(text) - len(tail)]
    return head + OUTPUT_NOTE.format(elided=len(middle), lines=middle.count("\n")).lstrip("\n") + tail


def fit_lines(lines: list[str], budget: int) -> int:
    """How many of `lines` (joined by newlines) fit in `budget` characters."""
    used = 0
    for n, line in enumerate(lines):
        used += len(line) + 1
        if used > budget:
            return n
    return len(lines)
