"""Harness overhead beside mini-swe-agent: same scripted server, repo, bash commands and steps, interleaved.

    python bench/peer_bench.py [--steps 30] [--rounds 5] [--concurrent 8] [--venv .bench-venv/mini-swe-agent]

mini-swe-agent is installed from PyPI into its own venv (created on the first run) and runs its `mini`
configuration: the tool-calling LitellmModel and the LocalEnvironment. nightowl runs unsandboxed
(`--sandbox local`) and under bubblewrap (`--sandbox auto`). Every agent is its own process talking to one
scripted OpenAI-compatible server in this process (instant replies, the same bash command list for all).

Step time is measured at the server: the gap between an agent's consecutive requests, i.e. everything the
agent does for one step (handle the reply, run the command, save, build the next request). CPU and peak
RSS come from each agent process itself (bench/peer_agents.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.scripted_server import ScriptedServer  # noqa: E402
from bench.agent_bench import make_repo  # noqa: E402
from bench.conditions import load_average, machine, wait_for_quiet  # noqa: E402

MINI_VERSION = "2.4.6"
COMMANDS = ["ls -la", "grep -rn 'def f1' --include=*.py . | head -5", "cat m3.py", "sed -n 1,2p m7.py",
            "git status --short", "wc -l m1.py m2.py m3.py", "echo step >> bench.log && wc -l bench.log"]
AGENT_ID = re.compile(r"\[agent-(\d+)\]")
CONFIGS = [("mini-swe-agent", "mini", None), ("nightowl, no sandbox", "nightowl", "local"),
           ("nightowl, bubblewrap", "nightowl", "auto")]


class Recorder:
    """The scripted model: the same N bash commands for every agent, then each one's way to finish."""

    def __init__(self, steps: int):
        self.steps = steps
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        user = next((str(m.get("content")) for m in request["messages"] if m.get("role") == "user"), "")
        agent = (AGENT_ID.search(user) or ["", "?"])[1]
        with self.lock:
            self.arrivals.setdefault(agent, []).append(now)
        turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
        if turn < self.steps:
            return {"tool_calls": [{"name": "bash", "arguments": {"command": COMMANDS[turn % len(COMMANDS)]}}]}
        if any(t.get("function", {}).get("name") == "submit" for t in request.get("tools") or []):
            return {"tool_calls": [{"name": "submit", "arguments": {}}]}  # nightowl: review, then confirm
        return {"tool_calls": [{"name": "bash", "arguments": {"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}}]}

    def rate_while_all_run(self, agents: list[str]) -> float:
        """Steps/s over the window in which every agent is past its start-up and none has finished."""
        runs = [self.arrivals[a][: self.steps + 1] for a in agents]
        start, end = max(r[0] for r in runs), min(r[-1] for r in runs)
        if end <= start:  # no common window (one finished before another started): use the whole span
            start, end = min(r[0] for r in runs), max(r[-1] for r in runs)
            return len(agents) * self.steps / (end - start)
        return sum(1 for r in runs for t in r[1:] if start < t <= end) / (end - start)

    def step_times(self, agent: str) -> list[float]:
        """Seconds from each bash reply to the agent's next request (the first N gaps)."""
        t = self.arrivals[agent][: self.steps + 1]
        return [b - a for a, b in zip(t, t[1:])]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def ensure_mini_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with mini-swe-agent=={MINI_VERSION} from PyPI …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # mcp: its default install imports it on the first model call without declaring it
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"mini-swe-agent=={MINI_VERSION}", "mcp"], check=True)
    return python


def agent_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # both sides cache bytecode
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", MSWEA_SILENT_STARTUP="1", MSWEA_GLOBAL_CONFIG_DIR=str(work / "mswea"),
               MSWEA_COST_TRACKING="ignore_errors", PYTHONPATH=str(ROOT))
    return env


class Runner:
    def __init__(self, work: Path, repo: Path, server: ScriptedServer, mini_python: Path):
        self.work, self.repo, self.server, self.mini_python = work, repo, server, mini_python
        self.env = agent_env(work)
        self.next_id = 0

    def start(self, kind: str, sandbox: str | None) -> tuple[str, subprocess.Popen]:
        self.next_id += 1
        agent = str(self.next_id)
        out = self.work / "runs" / agent
        out.mkdir(parents=True)
        repo = self.repo
        if kind == "mini":  # mini-swe-agent works in the directory it is given: its own clone, as nightowl makes one
            repo = out / "clone"
            git("clone", "-q", "--shared", str(self.repo), str(repo), cwd=self.work)
        python = str(self.mini_python) if kind == "mini" else sys.executable
        cmd = [python, str(ROOT / "bench" / "peer_agents.py"), kind, "--base-url", self.server.base_url,
               "--repo", str(repo), "--task", f"[agent-{agent}] benchmark task", "--out", str(out)]
        if sandbox:
            cmd += ["--sandbox", sandbox]
        return agent, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    @staticmethod
    def finish(proc: subprocess.Popen) -> dict[str, Any]:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"agent failed ({proc.returncode}): {stderr[-2000:]}")
        return json.loads(stdout.strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30, help="bash steps per agent")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of one agent per configuration")
    parser.add_argument("--concurrent", type=int, default=8, help="agents at once in the throughput phase")
    parser.add_argument("--model-latency", type=float, default=5.0,
                        help="seconds per model call assumed for the agents-sustained column")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench-venv" / "mini-swe-agent")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for it at most")
    args = parser.parse_args()
    mini_python = ensure_mini_venv(args.venv)
    load_start = wait_for_quiet(args.quiet_load, args.max_wait)
    recorder = Recorder(args.steps)
    samples: dict[str, dict[str, list[float]]] = {name: {"step": [], "cpu": [], "rss": [], "setup": []} for name, *_ in CONFIGS}
    throughput: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(recorder) as server:
        server.requests = _Discard()
        work = Path(tmp)
        runner = Runner(work, make_repo(work), server, mini_python)
        for _name, kind, sandbox in CONFIGS:  # warm-up: bytecode written, page cache filled; not counted
            runner.finish(runner.start(kind, sandbox)[1])
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[: r % len(CONFIGS)]
            for name, kind, sandbox in order:
                agent, proc = runner.start(kind, sandbox)
                result = runner.finish(proc)
                s = samples[name]
                s["step"] += recorder.step_times(agent)
                s["cpu"].append(result["cpu_s"] / result["steps"])
                s["rss"].append(result["max_rss_mb"])
                s["setup"].append(result["setup_s"])
        for r in range(2):
            for name, kind, sandbox in (CONFIGS if r == 0 else CONFIGS[::-1]):
                started = [runner.start(kind, sandbox) for _ in range(args.concurrent)]
                for _, proc in started:
                    runner.finish(proc)
                throughput[name].append(recorder.rate_while_all_run([a for a, _ in started]))
    mini_version = subprocess.run([str(mini_python), "-c", "import importlib.metadata as m; print(m.version('mini-swe-agent'))"],
                                  capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"conditions: {machine()}, mini-swe-agent {mini_version}, nightowl {commit}; {load_start}, "
          f"{load_average()} at the end")
    print(f"{args.steps} bash steps per agent, {args.rounds} interleaved rounds + 1 warm-up, commands: {COMMANDS}; "
          f"throughput: {args.concurrent} agents at once, 2 rounds; agents sustained = steps/s x {args.model_latency:g} s "
          "per model call\n")
    print("| agent | median ms/step | p90 ms/step | CPU ms/step | peak RSS MB/agent | start-up s | "
          f"steps/s, {args.concurrent} agents | agents sustained |")
    print("|---|---|---|---|---|---|---|---|")
    for name, *_ in CONFIGS:
        s = samples[name]
        rate = statistics.median(throughput[name])
        print(f"| {name} | {statistics.median(s['step']) * 1000:.1f} | {pct(s['step'], 0.9) * 1000:.1f} | "
              f"{statistics.median(s['cpu']) * 1000:.1f} | {statistics.median(s['rss']):.0f} | "
              f"{statistics.median(s['setup']):.2f} | {rate:.1f} | {rate * args.model_latency:.0f} |")
    mini = samples["mini-swe-agent"]
    for name, *_ in CONFIGS[1:]:
        s = samples[name]
        print(f"\n{name} / mini-swe-agent: step time {statistics.median(s['step']) / statistics.median(mini['step']):.2f}x, "
              f"CPU {statistics.median(s['cpu']) / statistics.median(mini['cpu']):.2f}x, "
              f"RSS {statistics.median(s['rss']) / statistics.median(mini['rss']):.2f}x, "
              f"throughput {statistics.median(throughput[name]) / statistics.median(throughput['mini-swe-agent']):.2f}x")


class _Discard(list):
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
