"""The HTML page: static, escaped summary and plots; the table and trajectories as JSON that inline JS renders.

Trajectories sit in their own `<script type="application/json">` blocks and are parsed only when their
row is opened, so a report of 1,000 tasks loads as fast as its table.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from importlib import resources
from typing import Any

from orchestrator.report.model import Section
from orchestrator.report.svg import esc


def script_json(value: Any) -> str:
    """JSON that cannot end its <script> element or open a comment, whatever strings it holds."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def asset(name: str) -> str:
    return resources.files("orchestrator.report").joinpath("assets", name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def section_html(index: int, section: Section) -> str:
    parts = [f'<section class="kind-{esc(section.kind)}" id="section-{index}">', f"<h2>{esc(section.title)}</h2>"]
    if section.summary:
        parts.append('<dl class="summary">' + "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>"
                                                    for k, v in section.summary) + "</dl>")
    parts += [f'<p class="note">{esc(n)}</p>' for n in section.notes]
    for table in section.tables:
        parts.append(f'<table class="static"><caption>{esc(table.title)}</caption><thead><tr>'
                     + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr></thead><tbody>"
                     + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
                     + "</tbody></table>")
    if section.plots:
        parts.append('<div class="plots">' + "".join(section.plots) + "</div>")
    if section.columns:
        parts.append(f'<div class="tools" id="tools-{index}"></div>'
                     f'<div class="table-wrap"><table id="table-{index}" class="rows"></table></div>'
                     f'<div class="traj" id="traj-{index}">'
                     '<p class="hint">Click a row to open its trajectory.</p></div>')
    for name, text in section.texts:
        parts.append(f"<details class=\"text\"><summary>{esc(name)}</summary><pre>{esc(text)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_page(title: str, source: str, sections: list[Section]) -> str:
    data = {"sections": [{"kind": s.kind, "columns": [c.model_dump() for c in s.columns], "rows": s.rows}
                         for s in sections]}
    css, js = asset("report.css"), asset("report.js")
    trajectories = "\n".join(f'<script type="application/json" id="t-{i}-{esc(ref)}">{script_json(view)}</script>'
                             for i, s in enumerate(sections) for ref, view in s.trajectories.items())
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Everything is inline (works offline); only our own script and style may run, even if a string slipped through.
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {csp_hash(css)}; "
        f"script-src {csp_hash(js)}\">",
        f"<title>{esc(title)}</title>", f"<style>{css}</style></head><body>",
        f'<header><h1>{esc(title)}</h1><p class="sub">{esc(source)} · written {esc(time.strftime("%Y-%m-%d %H:%M:%S"))}'
        "</p></header>",
        *(section_html(i, s) for i, s in enumerate(sections)),
        f'<script type="application/json" id="report-data">{script_json(data)}</script>',
        trajectories,
        f"<script>{js}</script>", "</body></html>", ""])
