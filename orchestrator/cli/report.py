"""`nightowl report DIR`: one self-contained HTML page for a shift, generation or training directory."""
from __future__ import annotations

import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.console import out
from orchestrator.errors import UsageError

REPORT_NAME = "report.html"


def parse_price(text: str) -> tuple[float, float]:
    """"PROMPT[,COMPLETION]" dollars per million tokens; one number prices both."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v < 0 for v in values):
        raise UsageError(f"--usd-per-mtok must be PROMPT[,COMPLETION] dollars per million tokens, e.g. 0.2,0.8; "
                         f"not {text!r}")
    return values[0], values[-1]


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:

    @app.command()
    @user_errors
    def report(directory: Path = typer.Argument(..., help="A shift, generate or training output directory."),
               out_file: Optional[Path] = typer.Option(None, "--out", help=f"HTML file to write (default DIR/{REPORT_NAME})."),
               open_browser: bool = typer.Option(False, "--open", help="Open the report in a browser."),
               usd_per_mtok: Optional[str] = typer.Option(None, "--usd-per-mtok",
                                                          help="Price for the cost line: PROMPT[,COMPLETION] $ per million tokens.")) -> None:
        """Write one self-contained HTML report (summary, plots, table, trajectories) for DIR."""
        from agent.trajectory import write_text_atomic
        from orchestrator.report import build_report, detect_kinds
        from orchestrator.report.model import ReportOptions

        options = ReportOptions(usd_per_mtok=parse_price(usd_per_mtok) if usd_per_mtok else None)
        detect_kinds(directory)
        target = out_file or directory / REPORT_NAME
        if target.is_dir():
            raise UsageError(f"--out {target} is a directory: give a file name, e.g. {target / REPORT_NAME}")
        if not target.parent.is_dir():
            raise UsageError(f"--out {target}: directory {target.parent} does not exist")
        html = build_report(directory, options)
        # Lone surrogates (from bytes that were not UTF-8) must not stop the report from being written.
        write_text_atomic(target, html.encode("utf-8", errors="replace").decode("utf-8"))
        out.print(f"report written to {target} ({target.stat().st_size / 1024:.0f} KiB)")
        if open_browser:
            webbrowser.open(target.resolve().as_uri())
