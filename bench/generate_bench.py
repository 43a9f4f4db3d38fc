"""`nightowl generate` numbers: function sampling on real repositories, and samples/s with an instant teacher.

1. Sampling: `list_functions` on each repo at HEAD (git blobs, tree-sitter), repeated; functions per language.
2. Generation: `nightowl generate` as a subprocess against the scripted teacher (instant replies, real HTTP,
   real sandboxes and workspaces), samples per second and the median time of each stage.
3. Faults: the same generation where one sampled function's T1 requests always fail (HTTP 500) or stall
   (longer than --model-timeout); how many samples finish, how long the run takes, whether the pool paused.

    .venv/bin/python bench/generate_bench.py [--repos R1,R2] [--gen-repo R] [--samples 12] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.scripted_server import ScriptedServer  # noqa: E402
from training.synthesis.functions import list_functions  # noqa: E402
from training.synthesis.scripted_teacher import request_kind, target_of, teacher  # noqa: E402


def bench_sampling(repo: Path, repeats: int) -> None:
    times, report = [], None
    for _ in range(repeats):
        report = list_functions(repo)
        times.append(report.seconds)
    assert report is not None
    print(f"sampling {repo.name}: {len(report.functions)} functions in {report.files_parsed} parsed files of "
          f"{report.files_total} at {report.commit[:12]}; time min {min(times):.2f} s, median "
          f"{statistics.median(times):.2f} s over {repeats} runs")
    print(f"  per language: {json.dumps(report.per_language)}")
    print(f"  files skipped: {json.dumps(report.skipped)}")
    print(f"  files skipped per language: {json.dumps(report.skipped_per_language)}")
    print(f"  why (reason/rule): {json.dumps(report.skip_rules)}")
    if report.skipped_functions:
        print(f"  functions skipped inside parsed files: {json.dumps(report.skipped_functions)}")


def run_generate(repo: Path, out: Path, url: str, samples: int, workers: int, sandbox: str, *extra: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "generate", str(repo), "--samples", str(samples), "--base-url", url,
         "--model", "scripted", "--out", str(out), "--workers", str(workers), "--sandbox", sandbox, "--json",
         "--max-steps", "6", *extra], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"generate failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def stage_times(out: Path) -> dict[str, float]:
    started, per_stage = {}, {}
    for line in (out / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "attempt_start":
            started[event["run_id"]] = event["ts"]
        elif event["event"] == "attempt_end" and event["run_id"] in started:
            stage = event["run_id"].split(".")[1].split("-")[0]
            per_stage.setdefault(stage, []).append(event["ts"] - started[event["run_id"]])
    return {stage: round(statistics.median(v), 3) for stage, v in per_stage.items()}


def summary(out: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "status", str(out), "--json"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(result.stdout)


def bench_generation(repo: Path, samples: int, workers: int, sandbox: str, tmp: Path) -> None:
    with ScriptedServer(teacher) as server:
        elapsed = run_generate(repo, tmp / "clean", server.base_url, samples, workers, sandbox)
        chat = len(server.chat_requests())
    st = summary(tmp / "clean")
    gen = st["generate"]
    print(f"generate {repo.name}: {gen['stages']['done']} of {samples} samples done in {elapsed:.1f} s with {workers} "
          f"workers = {gen['stages']['done'] / elapsed:.3f} samples/s ({chat} model requests, "
          f"{chat / elapsed:.1f}/s); recall histogram {json.dumps({k: v for k, v in gen['recall_histogram'].items() if v})}")
    print(f"  median seconds per stage (claim to result): {json.dumps(stage_times(tmp / 'clean'))}")


def bench_faults(repo: Path, samples: int, workers: int, sandbox: str, tmp: Path) -> None:
    for failure in ("failing", "stalled"):
        poisoned: list[str] = []

        def respond(request: dict[str, Any], failure: str = failure, poisoned: list[str] = poisoned) -> dict[str, Any]:
            target = target_of(request)
            if request_kind(request) == "t1" and target and (not poisoned or target[0] == poisoned[0]):
                poisoned[:1] = [target[0]]
                return {"status": 500} if failure == "failing" else {**teacher(request), "sleep": 5}
            return teacher(request)

        out = tmp / failure
        with ScriptedServer(respond) as server:
            elapsed = run_generate(repo, out, server.base_url, samples, workers, sandbox, "--model-timeout", "2",
                                   "--model-retries", "1")
        gen = summary(out)["generate"]
        downs = sum(1 for line in (out / "events.jsonl").read_text().splitlines()
                    if json.loads(line)["event"] == "server_down")
        print(f"{failure} teacher on 1 of {samples} functions: done {gen['stages']['done']}, dropped "
              f"{json.dumps(gen['dropped'])}, {elapsed:.1f} s, server_down events {downs} "
              "(--model-timeout 2 --model-retries 1)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", default="/work/realrepos/fastapi,/work/realrepos/hugo")
    parser.add_argument("--gen-repo", default="/work/realrepos/fastapi")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--skip-faults", action="store_true")
    args = parser.parse_args()
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"conditions: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, python "
          f"{platform.python_version()}, {git}, sandbox {args.sandbox}")
    for repo in args.repos.split(","):
        bench_sampling(Path(repo), args.repeats)
    with tempfile.TemporaryDirectory(prefix="nightowl-genbench-") as tmp:
        bench_generation(Path(args.gen_repo), args.samples, args.workers, args.sandbox, Path(tmp))
        if not args.skip_faults:
            bench_faults(Path(args.gen_repo), args.samples, args.workers, args.sandbox, Path(tmp))


if __name__ == "__main__":
    main()
