"""Sandbox benchmark: per-command overhead of each backend and workspace creation time.

    python bench/sandbox_bench.py [--runs 100] [--files 6000]

Runs every setup interleaved in the same process (one round = one command on each setup), prints a
markdown table and writes it to bench/SANDBOX_RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.bwrap import BubblewrapSandbox, bwrap_works  # noqa: E402
from sandbox.cgroups import RunCgroup  # noqa: E402
from sandbox.limits import ResourceLimits  # noqa: E402
from sandbox.local import LocalSandbox  # noqa: E402
from sandbox.workspace import create_workspace, remove_workspace  # noqa: E402

RESULTS = Path(__file__).with_name("SANDBOX_RESULTS.md")
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}


def make_repo(root: Path, files: int) -> Path:
    repo = root / "big-repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(files):
        d = repo / f"pkg{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i % 100:03d}.py").write_text(f"VALUE = {i}\n" + "# filler line\n" * (i % 40))
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "big"], check=True, env=GIT_ENV)
    os.sync()
    return repo


def ms(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.9))] * 1000


def per_command_cgroup(sb: BubblewrapSandbox, limits: ResourceLimits) -> Callable[[], object]:
    """A fresh memory+pids cgroup created, joined and removed around every command."""
    def run() -> object:
        sb.cgroup = RunCgroup(limits.memory_mb, limits.max_processes)
        try:
            return sb.execute("true", timeout=30)
        finally:
            sb.cgroup.close()
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--files", type=int, default=6000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    problem = bwrap_works()
    if problem:
        sys.exit(f"bubblewrap unusable: {problem}")
    tmp = Path(tempfile.mkdtemp(prefix="nightowl-bench-"))
    limits = ResourceLimits(memory_mb=1024, max_processes=256)
    try:
        repo = make_repo(tmp, args.files)
        ws_times, open_times, clone_times = [], [], []
        create_workspace(repo, "HEAD", tmp / "warm")  # warm the page cache for the repository's objects
        for i in range(5):
            t0 = time.perf_counter()
            ws = create_workspace(repo, "HEAD", tmp / f"ws{i}")
            t1 = time.perf_counter()
            sb = BubblewrapSandbox(ws, limits)
            t2 = time.perf_counter()
            ws_times.append(t1 - t0)
            open_times.append(t2 - t0)
            sb.close()
            remove_workspace(ws)
            t = time.perf_counter()
            subprocess.run(["git", "clone", "-q", "--shared", str(repo), str(tmp / f"clone{i}")], check=True)
            clone_times.append(time.perf_counter() - t)
            shutil.rmtree(tmp / f"clone{i}")

        ws = create_workspace(repo, "HEAD", tmp / "ws")
        local = LocalSandbox(ws, limits)
        bw = BubblewrapSandbox(ws, limits, use_cgroups=False)
        bw_cg = BubblewrapSandbox(ws, limits)
        bw_pc = BubblewrapSandbox(ws, limits, use_cgroups=False)
        setups: dict[str, Callable[[], object]] = {
            "plain subprocess `true`": lambda: subprocess.run(["true"], check=True),
            "local backend (process group + rlimits)": lambda: local.execute("true", timeout=30),
            "hardened bwrap profile alone (`bwrap ... true`, no bash, no output file)":
                lambda: subprocess.run([*bw.argv_prefix, "--", "true"], preexec_fn=bw._preexec, cwd="/", env={}),
            "hardened bwrap backend, no cgroup": lambda: bw.execute("true", timeout=30),
            "hardened bwrap backend + per-run cgroup (default)": lambda: bw_cg.execute("true", timeout=30),
            "hardened bwrap backend + fresh cgroup per command": per_command_cgroup(bw_pc, limits),
        }
        samples: dict[str, list[float]] = {name: [] for name in setups}
        for fn in setups.values():  # warm-up
            fn()
        # Blocks of consecutive commands per setup (as an agent runs them), the blocks interleaved so
        # that load changes hit every setup alike; interleaving single commands would let one setup's
        # namespace teardown land in the next setup's timing.
        block = max(1, args.runs // 4)
        while min(len(v) for v in samples.values()) < args.runs:
            for name, fn in setups.items():
                for _ in range(block):
                    t = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - t)
        git_plain, git_sb = [], []
        # Separate blocks: host git (uid 0) and sandboxed git (another uid) would each find the index's
        # stat data stale and re-hash every file if they alternated.
        for _ in range(20):
            t = time.perf_counter()
            subprocess.run(["git", "-C", str(ws.path), "status", "--short"], capture_output=True)
            git_plain.append(time.perf_counter() - t)
        bw_cg.execute("git status --short", timeout=30)
        for _ in range(20):
            t = time.perf_counter()
            bw_cg.execute("git status --short", timeout=30)
            git_sb.append(time.perf_counter() - t)
        check = bw_cg.self_check()
        for sb in (local, bw, bw_cg, bw_pc):
            sb.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    lines = ["## Sandbox", "",
             f"`python bench/sandbox_bench.py --runs {args.runs} --files {args.files}` on {platform.node() or 'host'}: "
             f"{os.cpu_count()} cores, kernel {platform.release()}, uid {os.geteuid()}, "
             f"Python {platform.python_version()}, memory limit {check['memory_limit_mb']} MiB ({check['memory_limit_source']}), pids limit {check['pids_limit']} (read inside), "
             f"load average {load:.1f} at the end. Setups run in interleaved blocks of {max(1, args.runs // 4)} consecutive commands, {args.runs} commands each.", "",
             "| per-command setup | median ms | p90 ms |", "|---|---|---|"]
    for name, s in samples.items():
        med, p90 = ms(s)
        lines.append(f"| {name} | {med:.1f} | {p90:.1f} |")
    for name, s in (("`git status` plain", git_plain), ("`git status` in bwrap + cgroup", git_sb)):
        med, p90 = ms(s)
        lines.append(f"| {name} | {med:.1f} | {p90:.1f} |")
    lines += ["", f"| workspace ({args.files} files, 5 runs) | median ms | min ms | max ms |", "|---|---|---|---|"]
    for name, s in (("baseline: plain `git clone --shared` (with checkout)", clone_times),
                    ("`create_workspace` (git clone --shared + checkout)", ws_times),
                    ("workspace + bwrap sandbox open (chown to sandbox uid, cgroup, argv)", open_times)):
        lines.append(f"| {name} | {statistics.median(s) * 1000:.0f} | {min(s) * 1000:.0f} | {max(s) * 1000:.0f} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
