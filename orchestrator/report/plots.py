"""The plots more than one directory kind draws, from plain numbers."""
from __future__ import annotations

from collections import Counter

from orchestrator.report.svg import bar_chart, histogram, line_chart


def time_unit(span_s: float) -> tuple[str, float]:
    return ("hours", 3600.0) if span_s > 3 * 3600 else ("minutes", 60.0) if span_s > 180 else ("seconds", 1.0)


def finished_over_time(finish_times: list[float], start: float, label: str = "tasks finished") -> str:
    times = sorted(t for t in finish_times if t is not None)
    unit, div = time_unit((times[-1] - start) if times else 0)
    points = [(0.0, 0.0)] + [((t - start) / div, float(i + 1)) for i, t in enumerate(times)]
    return line_chart(f"{label} over time", {label: points} if times else {}, f"{unit} since start", label, step=True)


def tokens_per_second(step_tokens: list[tuple[float, int, int]], start: float, bins: int = 40) -> str:
    """Prompt + completion tokens/s (what the servers processed) and completion tokens/s (what they generated)."""
    if not step_tokens:
        return line_chart("tokens/s", {}, "", "")
    span = max(max(t for t, _, _ in step_tokens) - start, 1e-3)
    width = span / bins
    totals, generated = [0] * bins, [0] * bins
    for t, tokens, completion in step_tokens:
        i = min(bins - 1, max(0, int((t - start) / width)))
        totals[i] += tokens
        generated[i] += completion
    unit, div = time_unit(span)
    x = [(i + 0.5) * width / div for i in range(bins)]
    return line_chart("tokens/s (all agents)", {"prompt + completion": [(xi, v / width) for xi, v in zip(x, totals)],
                                                "completion": [(xi, v / width) for xi, v in zip(x, generated)]},
                      f"{unit} since start", "tokens/s")


def status_breakdown(title: str, statuses: Counter) -> str:
    return bar_chart(title, sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))


def recall_histogram(recalls: list[float | None], bins: int = 10) -> str:
    counts = [0] * bins
    for r in recalls:
        if r is not None:
            counts[min(bins - 1, int(r * bins))] += 1
    labels = [f"{i / bins:.1f}" for i in range(bins)]
    undefined = sum(r is None for r in recalls)
    items = list(zip(labels, counts)) + ([("n/a", undefined)] if undefined else [])
    return histogram("recall of T2's patch against T1's", items, "line-level recall (bin start)", "samples")
