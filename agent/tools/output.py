"""Observations a tokenizer can take: within the context budget, with true counts of what is missing, and never
raw control bytes.

* One cut, on whole lines, with one note giving the characters and lines left out (counted over the whole
  output, also the part the sandbox never read back).
* Terminal output as a terminal shows it: ANSI escape sequences removed, carriage-return overwrites (progress
  bars) resolved, any other control character escaped (`\\x00`).
* Binary data as a one-line description (size, a guess of the type), never as bytes.
"""
from __future__ import annotations

import re

OUTPUT_NOTE = ("\n<response clipped><NOTE>{elided} characters ({lines} lines) were elided from the middle of this "
               "output. Narrow the command (grep -n, head, tail, sed -n 'A,Bp') to see the part you need.</NOTE>\n")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Every C0/C1 control character except tab and newline."""
BINARY_SAMPLE = 8192
BINARY_SHARE = 0.1
"""Text where more than this share of a sample is control characters or undecodable bytes is binary."""
BINARY_MIN_BAD = 16
"""Fewer such characters than this are escaped, not described (`printf 'a\\0b'`)."""
MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x7fELF", "an ELF executable or library"), (0, b"\x89PNG", "a PNG image"), (1, b"PNG\r\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"), (0, b"GIF8", "a GIF image"), (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a zip archive (zip, wheel, jar)"), (0, b"\x1f\x8b", "gzip-compressed data"),
    (0, b"BZh", "bzip2-compressed data"), (0, b"\xfd7zXZ\x00", "xz-compressed data"),
    (0, b"(\xb5/\xfd", "zstd-compressed data"), (257, b"ustar", "a tar archive"),
    (0, b"SQLite format 3\x00", "an SQLite database"), (0, b"\x00asm", "a WebAssembly module"),
    (0, b"\xca\xfe\xba\xbe", "a Java class file or Mach-O binary"), (0, b"MZ", "a Windows executable"),
    (0, b"\x93NUMPY", "a NumPy array"), (0, b"\x80\x04\x95", "a Python pickle"),
    (0, b"\x80\x05\x95", "a Python pickle"),
)


def escape_controls(text: str) -> str:
    """Control characters other than tab and newline as `\\xNN`."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def overwrite_carriage_returns(line: str) -> str:
    """What a terminal shows for one line with carriage returns: later text overwrites earlier text."""
    shown = ""
    for segment in line.split("\r"):
        shown = segment + shown[len(segment):]
    return shown


def terminal_text(text: str) -> str:
    """Command output as a terminal shows it, with no control characters left but tab and newline."""
    if "\x1b" in text:
        text = ANSI_ESCAPE.sub("", text)
    if "\r" in text:
        text = "\n".join(overwrite_carriage_returns(line.removesuffix("\r")) if "\r" in line else line
                         for line in text.split("\n"))
    return escape_controls(text)


def looks_binary(data: bytes) -> bool:
    """Like git: a NUL byte early on, or a sample full of control bytes."""
    sample = data[:BINARY_SAMPLE]
    if b"\x00" in sample:
        return True
    controls = sum(sample.count(bytes([b])) for b in (*range(0x01, 0x09), *range(0x0e, 0x1b), *range(0x1c, 0x20)))
    return bool(sample) and controls / len(sample) > BINARY_SHARE


def looks_binary_text(text: str) -> bool:
    """Decoded output that is mostly control characters and undecodable bytes (shown as U+FFFD)."""
    sample = text[:BINARY_SAMPLE] + text[-BINARY_SAMPLE:] if len(text) > 2 * BINARY_SAMPLE else text
    if not sample:
        return False
    bad = len(CONTROL.findall(sample.replace("\r", "").replace("\x1b", ""))) + sample.count("\ufffd")
    return bad >= BINARY_MIN_BAD and bad / len(sample) > BINARY_SHARE


def guess_type(prefix: bytes) -> str | None:
    for offset, magic, kind in MAGIC:
        if prefix[offset:offset + len(magic)] == magic:
            return kind
    return None


def describe_binary(size: int, prefix: bytes) -> str:
    """`123,456 bytes, looks like a PNG image` (or `... of binary data` when the type is unknown)."""
    kind = guess_type(prefix)
    return f"{size:,} bytes, looks like {kind}" if kind else f"{size:,} bytes of binary data"


def clip_parts(head: str, tail: str, cap: int, dropped_chars: int = 0, dropped_lines: int = 0) -> str:
    """`head`, then `dropped_chars` characters holding `dropped_lines` newlines that are not here, then `tail`, all
    within `cap` characters: one cut between lines where there are any, one note with the true counts."""
    if not (tail or dropped_chars) and len(head) <= cap:
        return head
    if not (tail or dropped_chars):
        head, tail = head[:len(head) // 2], head[len(head) // 2:]
    total_chars = len(head) + dropped_chars + len(tail)
    reserve = len(OUTPUT_NOTE.format(elided=total_chars, lines=total_chars))
    budget = max(0, cap - reserve)
    tail_part = tail[len(tail) - min(len(tail), budget // 2):] if budget else ""
    head_part = head[:max(0, budget - len(tail_part))]
    if len(head_part) < len(head) and "\n" in head_part:
        head_part = head_part[:head_part.rindex("\n") + 1]
    if len(tail_part) < len(tail) and "\n" in tail_part[:-1]:  # a newline that only ends the output is no boundary
        tail_part = tail_part[tail_part.index("\n") + 1:]
    head_rest, tail_rest = head[len(head_part):], tail[:len(tail) - len(tail_part)]
    elided = len(head_rest) + dropped_chars + len(tail_rest)
    lines = head_rest.count("\n") + dropped_lines + tail_rest.count("\n")
    return head_part + OUTPUT_NOTE.format(elided=elided, lines=lines).lstrip("\n") + tail_part


def clip_middle(text: str, cap: int) -> str:
    """Keep the head and tail of `text` within `cap` characters, cutting between lines where there are any."""
    return clip_parts(text, "", cap)


def fit_lines(lines: list[str], budget: int) -> int:
    """How many of `lines` (joined by newlines) fit in `budget` characters."""
    used = 0
    for n, line in enumerate(lines):
        used += len(line) + 1
        if used > budget:
            return n
    return len(lines)
