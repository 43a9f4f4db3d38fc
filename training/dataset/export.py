"""`nightowl export`: trajectories from shifts and generations -> train.jsonl / val.jsonl / dataset.json.

A row is `{"messages", "tools", "metadata"}`: the OpenAI messages and tools exactly as they were sent (tool-call
arguments stay JSON strings), the model's reasoning kept, secrets scrubbed, over-long trajectories cut after the
last complete assistant turn that fits. The split is by task (and by SVG sample: T1 and T2 stay together) and
deterministic: the same inputs give the same bytes.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import statistics
import tempfile
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.chat_template import template_uses_reasoning
from agent.file_format import FileFormatError, NewerFormatError
from agent.trajectory import read_trajectory_data
from sandbox.errors import UserError
from training.dataset.render import fold_reasoning, render
from training.dataset.scrub import Scrubber, env_secret_values
from training.dataset.sources import Candidate, discover
from training.evaluation.holdout import refuse_leaks
from training.layout import DATASET_CARD, DATASET_FILE, TRAIN_ROWS, VAL_ROWS

DATASET_FORMAT = DATASET_FILE.tag
SPLIT_SALT = "nightowl-split/1:"


class ExportError(UserError, ValueError):
    """The export cannot run as asked (flags, output directory, tokenizer)."""


class ExportOptions(BaseModel):
    sources: list[Path]
    out: Path
    min_recall: float | None = Field(default=None, ge=0.0, le=1.0)
    """T2 rows below this line recall are dropped (T1 rows have no recall)."""
    max_tokens: int | None = Field(default=None, gt=0)
    tokenizer: str | None = None
    val_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    submitted_only: bool = True
    max_changed_lines: int | None = Field(default=None, gt=0)
    min_fit_share: float = Field(default=0.5, ge=0.0, le=1.0)
    """A cut trajectory is kept only if its kept part holds at least this share of its tokens."""
    allow_holdout_leak: bool = False
    """Export even when snapshots or demonstrations post-date a benchmark's cut-off (training/evaluation/holdout.py)."""


class ExportReport(BaseModel):
    out: Path
    candidates: int
    rows: dict[str, int]
    dropped: dict[str, int]
    truncated: int
    scrubbed: dict[str, int]
    seconds: float

    def summary(self) -> list[str]:
        """The lines `nightowl export` prints."""
        lines = [f"{self.rows['train']} train + {self.rows['val']} val rows from {self.candidates} trajectories in "
                 f"{self.seconds:.1f} s -> {self.out}"]
        if self.dropped:
            lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())))
        lines.append(f"truncated: {self.truncated}; scrubbed secrets: "
                     + (", ".join(f"{k} {v}" for k, v in sorted(self.scrubbed.items())) or "none"))
        return lines


def nightowl_version() -> str:
    try:
        return version("nightowl")
    except PackageNotFoundError:
        return "unknown"


def changed_lines(patch: str) -> int:
    return sum(1 for line in patch.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip())


def split_of(group: str) -> float:
    """A stable uniform number in [0, 1) per group: where it falls against --val-share decides its side."""
    digest = hashlib.sha256((SPLIT_SALT + group).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def last_assistant_end(messages: list[dict[str, Any]]) -> int:
    """Length of the longest prefix that ends with an assistant message (0: none)."""
    for k in range(len(messages), 0, -1):
        if messages[k - 1].get("role") == "assistant":
            return k
    return 0


class TokenCounter:
    """Token counts of a conversation and of its prefixes; the whole text is tokenized once."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def tokens(self, text: str) -> tuple[list[int], list[int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [start for start, _ in enc["offset_mapping"]], [end for _, end in enc["offset_mapping"]]

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        return len(self.tokens(render(self.tokenizer, messages, tools))[0])

    def fit(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int
            ) -> tuple[int, int, int]:
        """(cut, tokens of messages[:cut], tokens of all): cut is the end of the last assistant turn that fits."""
        full = render(self.tokenizer, messages, tools)
        starts, ends = self.tokens(full)
        total = len(starts)
        if total <= max_tokens:
            return len(messages), total, total

        def count(k: int) -> int:
            prefix = render(self.tokenizer, messages[:k], tools)
            n = bisect.bisect_left(starts, len(prefix))
            if full.startswith(prefix) and (n == 0 or ends[n - 1] <= len(prefix)):
                return n  # a token boundary of the whole text: the prefix tokenizes the same on its own
            return len(self.tokens(prefix)[0])

        cuts = [k + 1 for k, m in enumerate(messages) if m.get("role") == "assistant"]
        lo, hi, best = 0, len(cuts) - 1, (0, 0)
        while lo <= hi:  # token counts grow with the prefix: binary search over assistant turn ends
            mid = (lo + hi) // 2
            n = count(cuts[mid])
            if n <= max_tokens:
                best, lo = (cuts[mid], n), mid + 1
            else:
                hi = mid - 1
        return best[0], best[1], total


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot load a tokenizer from {path}: {str(e).splitlines()[0]}") from None


class Exporter:
    def __init__(self, options: ExportOptions):
        self.opt = options
        self.tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
        self.counter = TokenCounter(self.tokenizer) if self.tokenizer else None
        self.keep_reasoning_field = template_uses_reasoning(getattr(self.tokenizer, "chat_template", None))
        self.scrubber = Scrubber(env_secret_values())
        self.dropped: Counter[str] = Counter()
        self.truncated = 0

    def row(self, cand: Candidate) -> dict[str, Any] | None:
        try:
            data = read_trajectory_data(cand.trajectory)
        except NewerFormatError:
            raise
        except FileFormatError:
            return self.drop("unknown_format")
        except (OSError, ValueError):
            return self.drop("unreadable")
        if self.opt.submitted_only and data.get("exit_status") != "submitted":
            return self.drop("not_submitted")
        if cand.source == "svg-t2" and self.opt.min_recall is not None and (
                cand.recall is None or cand.recall < self.opt.min_recall):
            return self.drop("below_min_recall")
        patch = data.get("patch") or ""
        lines = changed_lines(patch)
        if self.opt.max_changed_lines is not None and lines > self.opt.max_changed_lines:
            return self.drop("too_many_changed_lines")
        messages = data.get("messages") or []
        messages = messages[:last_assistant_end(messages)]
        if not messages:
            return self.drop("no_assistant_turn")
        before = sum(self.scrubber.counts.values())
        messages = [fold_reasoning(self.scrubber.message(m), self.keep_reasoning_field) for m in messages]
        scrubbed = sum(self.scrubber.counts.values()) - before
        tools = data.get("tools")
        tokens, fit_share, truncated = None, None, False
        if self.counter is not None:
            cut, tokens, total = self.counter.fit(messages, tools, self.opt.max_tokens or 2**62)
            if cut < len(messages):
                fit_share = tokens / total
                if cut == 0 or fit_share < self.opt.min_fit_share:
                    return self.drop("too_long")
                messages, truncated = messages[:cut], True
                self.truncated += 1
        metadata = {
            "source": cand.source, "task_id": cand.task_id, "sample_id": cand.sample_id, "run_id": data.get("run_id"),
            "recall": cand.recall, "exit_status": data.get("exit_status"), "repo": data.get("repo"),
            "commit": data.get("base_commit"), "model": data.get("model"), "changed_lines": lines,
            "tokens": tokens, "truncated": truncated, "fit_share": fit_share, "scrubbed": scrubbed, **cand.extra,
        }
        return {"messages": messages, "tools": tools, "metadata": metadata}

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        return None


def validate(options: ExportOptions) -> list[Candidate]:
    if options.max_tokens and not options.tokenizer:
        raise ExportError("--max-tokens needs --tokenizer (the model directory or hub id) to count tokens")
    if options.out.exists() and (not options.out.is_dir() or any(options.out.iterdir())):
        raise ExportError(f"{options.out} already exists and is not empty; give a new --out directory")
    if not options.sources:
        raise ExportError("give at least one source directory")
    candidates = []
    for src in options.sources:
        candidates += discover(src)
    return candidates


def dumps_row(row: dict[str, Any]) -> str:
    """UTF-8 JSON; a string with lone surrogates (undecodable bytes) is kept as JSON escapes, never lost."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(row, ensure_ascii=True)
    return text + "\n"


def split_rows(rows: list[dict[str, Any]], val_share: float) -> tuple[list[dict], list[dict]]:
    groups = sorted({r["metadata"]["group"] for r in rows}, key=lambda g: (split_of(g), g))
    val_groups = {g for g in groups if split_of(g) < val_share}
    if val_share > 0 and not val_groups and len(groups) >= 2:
        val_groups = {groups[0]}
    if val_groups and len(val_groups) == len(groups) and len(groups) >= 2:
        val_groups.discard(groups[-1])
    order = {g: i for i, g in enumerate(groups)}
    rows = sorted(rows, key=lambda r: (order[r["metadata"]["group"]], r["metadata"]["source"],
                                       r["metadata"]["run_id"] or ""))
    return ([r for r in rows if r["metadata"]["group"] not in val_groups],
            [r for r in rows if r["metadata"]["group"] in val_groups])


def token_stats(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    counts = sorted(r["metadata"]["tokens"] for r in rows if r["metadata"]["tokens"] is not None)
    if not counts:
        return None
    return {"rows": len(counts), "total": sum(counts), "mean": round(statistics.fmean(counts), 1),
            "median": statistics.median(counts), "p90": counts[int(0.9 * (len(counts) - 1))], "max": counts[-1]}


def card(options: ExportOptions, train: list[dict], val: list[dict], exporter: Exporter, candidates: int
         ) -> dict[str, Any]:
    tools = {json.dumps(r["tools"], sort_keys=True): r["tools"] for r in train + val}
    by_source = lambda rows: dict(sorted(Counter(r["metadata"]["source"] for r in rows).items()))  # noqa: E731
    return {
        "format": DATASET_FORMAT, "nightowl_version": nightowl_version(),
        "sources": [str(s) for s in options.sources], "candidates": candidates,
        "counts": {"train": len(train), "val": len(val), "train_by_source": by_source(train),
                   "val_by_source": by_source(val),
                   "train_groups": len({r["metadata"]["group"] for r in train}),
                   "val_groups": len({r["metadata"]["group"] for r in val})},
        "dropped": dict(sorted(exporter.dropped.items())), "truncated": exporter.truncated,
        "scrubbed": dict(sorted(exporter.scrubber.counts.items())),
        "filters": {"submitted_only": options.submitted_only, "min_recall": options.min_recall,
                    "max_changed_lines": options.max_changed_lines, "max_tokens": options.max_tokens,
                    "min_fit_share": options.min_fit_share, "val_share": options.val_share},
        "tokenizer": options.tokenizer, "reasoning": "reasoning_content field" if exporter.keep_reasoning_field
        else "<think> block before content",
        "tokens": {"train": token_stats(train), "val": token_stats(val)},
        "tools": list(tools.values()),
    }


def write_dataset(out: Path, train: list[dict], val: list[dict], meta: dict[str, Any]) -> None:
    """Into a temp directory beside OUT, then one rename: OUT is complete or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, rows in ((TRAIN_ROWS, train), (VAL_ROWS, val)):
            with open(tmp / name, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(dumps_row(r) for r in rows)
        (tmp / DATASET_CARD).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # validated empty
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def nothing_exported(options: ExportOptions, candidates: int, dropped: dict[str, int]) -> str:
    sources = ", ".join(str(s) for s in options.sources)
    if not candidates:
        return (f"nothing to export: no trajectories in {sources} (a shift's runs/*/trajectory.json or a generate "
                "directory's samples.jsonl; `nightowl status DIR` says why a run produced none)")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
    return (f"nothing to export: all {candidates} trajectories in {sources} were dropped ({reasons}); "
            f"{options.out} not written")


def export(options: ExportOptions) -> ExportReport:
    import time

    started = time.perf_counter()
    candidates = validate(options)
    refuse_leaks([c.trajectory for c in candidates], options.allow_holdout_leak)
    exporter = Exporter(options)
    rows = []
    for cand in candidates:
        row = exporter.row(cand)
        if row is not None:
            row["metadata"]["group"] = cand.group
            rows.append(row)
    if not rows:
        raise ExportError(nothing_exported(options, len(candidates), exporter.dropped))
    train, val = split_rows(rows, options.val_share)
    write_dataset(options.out, train, val, card(options, train, val, exporter, len(candidates)))
    return ExportReport(out=options.out, candidates=len(candidates), rows={"train": len(train), "val": len(val)},
                        dropped=dict(exporter.dropped), truncated=exporter.truncated,
                        scrubbed=dict(exporter.scrubber.counts), seconds=time.perf_counter() - started)
