"""The live dashboard on a TTY: task counts, one row per running agent, tokens/s and time to the deadline."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Dashboard:
    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def render(self, snap: dict[str, Any]) -> Group:
        counts = snap["counts"]
        now = time.time()
        self.samples = [s for s in self.samples if now - s[0] < 30] + [(now, counts["tokens"])]
        t0, tok0 = self.samples[0]
        rate = (counts["tokens"] - tok0) / (now - t0) if now > t0 else 0.0
        st = counts["states"]
        finished = st["done"] + st["failed"]
        head = Text.assemble(
            ("queued ", "dim"), str(st["queued"]), ("  running ", "dim"), (str(st["running"]), "cyan"),
            ("  done ", "dim"), (str(st["done"]), "green"), ("  failed ", "dim"), (str(st["failed"]), "red"),
            ("  tokens/s ", "dim"), f"{rate:,.0f}", ("  elapsed ", "dim"), fmt_duration(snap["elapsed_s"]))
        if snap["deadline"]:
            head.append("  deadline in ", "dim")
            head.append(fmt_duration(snap["deadline"] - now))
        if finished and st["queued"] + st["running"]:
            eta = snap["elapsed_s"] / finished * (st["queued"] + st["running"])
            head.append("  ETA ", "dim")
            head.append(fmt_duration(eta))
        if snap["stopped"]:
            head.append(f"  stopping: {snap['stopped']}", "yellow")
        table = Table(box=None, pad_edge=False)
        for col in ("task", "server", "step", "tokens", "elapsed", "idle"):
            table.add_column(col)
        for r in sorted(snap["running"], key=lambda r: r["task"]):
            table.add_row(r["task"], r["server"], str(r["steps"]), str(r["tokens"]), fmt_duration(r["elapsed_s"]),
                          f"{r['idle_s']:.0f}s")
        servers = Text("servers: ", "dim")
        for s in snap["servers"]:
            servers.append(f"{s['url']} {s['in_flight']}/{s['cap']} ", "green" if s["healthy"] else "red")
        parts = [head, servers]
        if snap.get("stages"):
            stages = snap["stages"]
            parts.append(Text("samples: " + "  ".join(f"{k} {v}" for k, v in stages["stages"].items())
                              + f"  recall mean {stages['recall_mean']}", "dim"))
        return Group(*parts, table)


class LiveBoard:
    """The dashboard while a shift runs on a terminal; otherwise one intro line on the console."""
    def __init__(self, console: Any, quiet: bool, intro: Callable[[Any], str]):
        self.console, self.quiet, self.intro = console, quiet, intro
        self.live: Any = None

    def start(self, shift: Any) -> None:
        if self.quiet or not self.console.is_terminal:
            self.console.print(f"[dim]{self.intro(shift)}[/]", highlight=False)
            return
        from rich.live import Live
        board = Dashboard()
        self.live = Live(get_renderable=lambda: board.render(shift.snapshot()), console=self.console,
                         refresh_per_second=2, transient=False)
        self.live.start()

    def end(self, shift: Any) -> None:
        if self.live is not None:
            self.live.stop()
