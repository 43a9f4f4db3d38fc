"""Per-rollout overhead of `nightowl generate` against its floor, on an ordinary disk and on tmpfs.

Overhead of a rollout = its wall time (claim to result, from events.jsonl) minus the model's own time (the
trajectory's `model_duration_s`), with an instant scripted teacher over real HTTP, real git, real bubblewrap.
The floor, measured in the same run on the same disk: `git clone --shared --no-checkout` + `git checkout` of the
repository, and one bubblewrap start (`bwrap ... true`), per rollout; what no workspace-per-rollout design
can go below. Each row alternates floor and generate, twice, and keeps the medians.

    .venv/bin/python bench/rollout_bench.py [--repo R] [--files 2000] [--samples 8] [--workers 1,4]
        [--disks /var/tmp,/dev/shm]

Without --repo it builds a repository from the first --files files of this Python's standard library (real code
nobody here wrote).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.scripted_server import ScriptedServer  # noqa: E402
from sandbox.bwrap import find_bwrap  # noqa: E402
from training.synthesis.scripted_teacher import teacher  # noqa: E402


def stdlib_repo(path: Path, files: int) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*") if p.is_file() and not p.is_symlink()
                     and "__pycache__" not in p.parts and "site-packages" not in p.parts)
    for src in sources[:files]:
        dest = path / src.relative_to(stdlib)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stdlib"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    return path


def floor_once(repo: Path, where: Path) -> float:
    """clone --shared + checkout + one bubblewrap start, as an unprivileged user like the sandbox's."""
    target = Path(tempfile.mkdtemp(dir=where, prefix="floor-"))
    started = time.perf_counter()
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(target / "w")], check=True)
    # plain git, as a user would run it: it may complain about the repository's attributes (Sphinx's do)
    subprocess.run(["git", "-C", str(target / "w"), "checkout", "-q", "--detach", "HEAD"], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run([find_bwrap() or "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
                    "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--bind", str(target / "w"),
                    "/repo", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent", "true"],
                   check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def generate_overheads(repo: Path, where: Path, url: str, samples: int, workers: int) -> tuple[list[float], float]:
    """(overhead of each agent rollout, wall seconds from the first rollout's start to the last one's end per
    rollout: with several workers on few cores, what a rollout costs the machine rather than its latency)."""
    out = Path(tempfile.mkdtemp(dir=where, prefix="gen-"))
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "generate", str(repo), "--samples", str(samples), "--base-url", url,
         "--model", "scripted", "--out", str(out / "gen"), "--workdir", str(out / "work"), "--workers", str(workers),
         "--json", "--max-steps", "6", "--seed", "1"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    begun: dict[str, float] = {}
    overheads, ends = [], []
    for line in (out / "gen" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "attempt_start":
            begun[event["run_id"]] = event["ts"]
        elif event["event"] == "attempt_end" and event["run_id"] in begun:
            trajectory = out / "gen" / "runs" / event["run_id"] / "trajectory.json"
            if trajectory.is_file():  # agent rollouts (T1, T2); the self-check and PR are plain chat calls
                steps = json.loads(trajectory.read_text())["steps"]
                model = sum(s.get("model_duration_s") or 0 for s in steps)
                overheads.append(event["ts"] - begun[event["run_id"]] - model)
                ends.append(event["ts"])
    shutil.rmtree(out)
    return overheads, (max(ends) - min(begun.values())) / len(overheads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--disks", default=f"{tempfile.gettempdir()},/dev/shm")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        repo = args.repo.resolve() if args.repo else stdlib_repo(Path(tmp) / "stdlib", args.files)
        tracked = len(subprocess.run(["git", "-C", str(repo), "ls-files"], capture_output=True, text=True).stdout.splitlines())
        git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"conditions: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
              f"python {platform.python_version()}, {git}; repository {repo} ({tracked} files); instant scripted "
              f"teacher; {args.samples} samples (T1 + T2 rollouts each); medians of {args.repeats} alternating runs")
        print("| disk | workers | floor per rollout (s) | overhead per rollout (s), median | mean | ratio to floor | "
              "wall per rollout, all stages (s) |")
        print("|---|---|---|---|---|---|---|")
        with ScriptedServer(teacher) as server:
            for disk in args.disks.split(","):
                where = Path(tempfile.mkdtemp(dir=disk, prefix="nightowl-bench-"))
                fstype = subprocess.run(["df", "--output=fstype", str(where)], capture_output=True,
                                        text=True).stdout.split()[-1]
                try:
                    for workers in (int(w) for w in args.workers.split(",")):
                        floors, medians, means, spans = [], [], [], []
                        for _ in range(args.repeats):
                            floors += [floor_once(repo, where) for _ in range(3)]
                            overheads, span = generate_overheads(repo, where, server.base_url, args.samples, workers)
                            spans.append(span)
                            medians.append(statistics.median(overheads))
                            means.append(statistics.fmean(overheads))
                        floor, overhead = statistics.median(floors), statistics.median(medians)
                        print(f"| {disk} ({fstype}) | {workers} | {floor:.3f} | {overhead:.3f} | "
                              f"{statistics.median(means):.3f} | {overhead / floor:.2f}x | {statistics.median(spans):.3f} |",
                              flush=True)
                finally:
                    shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
