"""Small inline SVG charts drawn by hand (no library, no network): lines, bars and histograms.

Every label goes through `esc`, so a task id or status holding markup stays text.
"""
from __future__ import annotations

import math
from html import escape

PALETTE = ["#3b6ea5", "#d9822b", "#3a9a5b", "#b84a4a", "#7d5ba6", "#8c6d3f", "#c45ca2", "#5f6b73"]
W, H = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 28, 40


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.3g}"


def frame(title: str, body: list[str], x_label: str = "", y_label: str = "", height: int = H) -> str:
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" '
             f'width="{W}" height="{height}" '
             f'role="img" aria-label="{esc(title)}">',
             f'<text x="{W / 2}" y="16" class="title" text-anchor="middle">{esc(title)}</text>', *body]
    if x_label:
        parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{height - 6}" class="axis-label" text-anchor="middle">'
                     f'{esc(x_label)}</text>')
    if y_label:
        parts.append(f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" class="axis-label" text-anchor="middle" '
                     f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{esc(y_label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def empty_chart(title: str, why: str) -> str:
    return frame(title, [f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">{esc(why)}</text>'])


def axes(x_ticks: list[float], y_ticks: list[float], sx, sy) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="axis"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" class="axis"/>']
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt(t)}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 15}" text-anchor="middle" class="tick">{fmt(t)}</text>')
    return out


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
               step: bool = False) -> str:
    """One polyline per series; `step` draws a staircase (cumulative counts)."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return empty_chart(title, "no data")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(0.0, min(ys)), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1) * (W - LEFT - RIGHT)

    def sy(y: float) -> float:
        return H - BOTTOM - (y - y0) / ((y1 - y0) or 1) * (H - TOP - BOTTOM)

    body = axes(x_ticks, y_ticks, sx, sy)
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        coords: list[str] = []
        for j, (x, y) in enumerate(pts):
            if step and j:
                coords.append(f"{sx(x):.1f},{sy(pts[j - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{" ".join(coords)}">'
                    f'<title>{esc(name)}</title></polyline>')
        if len(pts) == 1:
            body.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{color}"/>')
        if len(series) > 1:
            body.append(f'<rect x="{W - RIGHT - 130}" y="{TOP + 4 + 14 * i}" width="10" height="10" fill="{color}"/>'
                        f'<text x="{W - RIGHT - 116}" y="{TOP + 13 + 14 * i}" class="legend">{esc(name)}</text>')
    return frame(title, body, x_label, y_label)


def bar_chart(title: str, items: list[tuple[str, float]], x_label: str = "") -> str:
    """Horizontal bars, one per label (e.g. exit statuses)."""
    if not items:
        return empty_chart(title, "no data")
    top = max(v for _, v in items) or 1
    row = 22.0
    left = 130
    body = []
    for i, (label, value) in enumerate(items):
        y = TOP + i * row
        width = value / top * (W - left - RIGHT - 50)
        body.append(f'<text x="{left - 6}" y="{y + row * 0.65:.1f}" text-anchor="end" class="tick">{esc(label)}</text>')
        body.append(f'<rect x="{left}" y="{y + 2:.1f}" width="{width:.1f}" height="{row - 4:.1f}" '
                    f'fill="{PALETTE[i % len(PALETTE)]}"><title>{esc(label)}: {fmt(value)}</title></rect>')
        body.append(f'<text x="{left + width + 4:.1f}" y="{y + row * 0.65:.1f}" class="tick">{fmt(value)}</text>')
    return frame(title, body, x_label, height=int(TOP + row * len(items) + 24))


def histogram(title: str, bins: list[tuple[str, int]], x_label: str, y_label: str = "count") -> str:
    """Vertical bars with one label per bin."""
    if not bins or not any(c for _, c in bins):
        return empty_chart(title, "no data")
    y_ticks = nice_ticks(0, max(c for _, c in bins))
    y1 = y_ticks[-1] or 1
    width = (W - LEFT - RIGHT) / len(bins)

    def sy(y: float) -> float:
        return H - BOTTOM - y / y1 * (H - TOP - BOTTOM)

    body = axes([], y_ticks, lambda x: x, sy)
    for i, (label, count) in enumerate(bins):
        x = LEFT + i * width
        body.append(f'<rect x="{x + 1:.1f}" y="{sy(count):.1f}" width="{width - 2:.1f}" '
                    f'height="{sy(0) - sy(count):.1f}" '
                    f'fill="{PALETTE[0]}"><title>{esc(label)}: {count}</title></rect>')
        body.append(f'<text x="{x + width / 2:.1f}" y="{H - BOTTOM + 15}" text-anchor="middle" class="tick">'
                    f'{esc(label)}</text>')
    return frame(title, body, x_label, y_label)
