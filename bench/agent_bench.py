"""Per-step overhead of the agent loop with an instant scripted model (real HTTP, real git, real commands).

    python bench/agent_bench.py [--steps 200] [--sandbox local|auto] [--shell persistent,stateless]
                                [--command 'echo {n}']

Each step: one HTTP round trip to a scripted server, parsing, one `bash` call of `echo N`, the trajectory
rewritten atomically. Reported side by side with a plain subprocess running the same command, so the
loop's own cost is the difference. With several `--shell` modes, each runs `--steps` steps in four
interleaved rounds (runs of steps/4, alternating modes), so that load changes hit every mode alike, and
a final table sets the modes side by side.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.loop import AgentConfig  # noqa: E402
from agent.model import ModelConfig  # noqa: E402
from agent.run import RunRequest, run_task  # noqa: E402
from agent.scripted_server import ScriptedServer  # noqa: E402
from agent.trajectory import load_trajectory  # noqa: E402


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    for i in range(50):
        (repo / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


COMMAND = "echo {n}"


def respond(request: dict) -> dict:
    turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return {"tool_calls": [{"name": "bash", "arguments": {"command": COMMAND.format(n=turn)}}]}


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def one_run(repo: Path, out: Path, server: ScriptedServer, sandbox: str, shell: str, steps: int) -> dict:
    """One agent run of `steps` bash steps; its per-step times (step i: from the progress report with i steps
    to the one with i + 1, paired with step i's own model and tool times)."""
    # Progress is reported after the first save (no step yet), after every step, and once more when a limit
    # ends the run without a new step: keep the first report at each step count.
    stamps: dict[int, float] = {}
    request = RunRequest(repo=repo, task="benchmark", sandbox=sandbox, out_dir=out,
                         model=ModelConfig(base_url=server.base_url, model=server.model),
                         agent=AgentConfig(max_steps=steps, stuck_repeats=10**6, shell=shell))
    start = time.perf_counter()
    outcome = run_task(request, progress=lambda t: stamps.setdefault(len(t.steps), time.perf_counter()))
    traj = load_trajectory(outcome.trajectory_path)
    n = len(traj.steps)
    assert all(e.exit_code == 0 for s in traj.steps for e in s.executions), "a benchmark command failed"
    return {"per_step": [stamps[i + 1] - stamps[i] for i in range(n)],
            "model": [s.model_duration_s for s in traj.steps], "tool": [s.tools_duration_s for s in traj.steps],
            "setup": stamps[0] - start, "total": time.perf_counter() - start, "steps": n,
            "exit": traj.exit_status.value, "size": outcome.trajectory_path.stat().st_size}


def main() -> None:
    global COMMAND
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--shell", default="persistent", help="persistent, stateless, or both comma-separated")
    parser.add_argument("--command", default=COMMAND, help="the bash command of every step; {n} is the step")
    args = parser.parse_args()
    COMMAND = args.command
    shells = args.shell.split(",")
    rounds = 4 if len(shells) > 1 else 1
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(respond) as server:
        repo = make_repo(Path(tmp))
        plain = []
        for i in range(args.steps):
            t = time.perf_counter()
            subprocess.run(["bash", "-c", COMMAND.format(n=i)], capture_output=True, cwd=repo)
            plain.append(time.perf_counter() - t)
        results: dict[str, list[dict]] = {shell: [] for shell in shells}
        for r in range(rounds):
            for shell in shells:
                results[shell].append(one_run(repo, Path(tmp) / f"runs-{shell}-{r}", server, args.sandbox, shell,
                                              args.steps // rounds))
        print(f"`python bench/agent_bench.py --steps {args.steps} --sandbox {args.sandbox} --shell {args.shell}"
              f"{'' if COMMAND == 'echo {n}' else f' --command {COMMAND!r}'}` on {os.cpu_count()} cores, "
              f"kernel {platform.release()}, Python {platform.python_version()}, uid {os.geteuid()}, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        medians: dict[str, tuple[float, float]] = {}
        for shell, runs in results.items():
            per_step = [v for run in runs for v in run["per_step"]]
            model_s = [v for run in runs for v in run["model"]]
            tool_s = [v for run in runs for v in run["tool"]]
            own = [p - m - t for p, m, t in zip(per_step, model_s, tool_s)]
            n = len(per_step)
            total = sum(run["total"] for run in runs)
            first = runs[0]["per_step"]
            quarter = max(1, len(first) // 4)
            medians[shell] = (statistics.median(per_step), statistics.median(tool_s))
            rows = [
                (f"plain subprocess `bash -c '{COMMAND}'`", plain),
                ("agent step, total", per_step),
                ("  model call (HTTP round trip, instant server)", model_s),
                (f"  tool call ({args.sandbox} sandbox, {shell} shell)", tool_s),
                ("  rest of the step (parse, history, atomic save)", own),
                (f"agent step, steps 1-{quarter} of a run", [v for run in runs for v in run["per_step"][:quarter]]),
                (f"agent step, last {quarter} steps of a run", [v for run in runs for v in run["per_step"][-quarter:]]),
            ]
            print(f"\n### {shell} shell\n{n} steps in {len(runs)} run(s), {total:.2f} s ({n / total:.1f} steps/s, including "
                  f"workspace and sandbox set-up {statistics.median(r['setup'] for r in runs) * 1000:.0f} ms per run), "
                  f"exit {runs[-1]['exit']}, trajectory {runs[-1]['size'] / 1024:.0f} KiB\n")
            print("| what | median ms | p90 ms |\n|---|---|---|")
            for name, values in rows:
                print(f"| {name} | {statistics.median(values) * 1000:.2f} | {pct(values, 0.9) * 1000:.2f} |")
            print(f"\nstep / plain-subprocess ratio (median): {statistics.median(per_step) / statistics.median(plain):.1f}x")
        if len(shells) > 1:
            base = shells[-1]
            print(f"\n| shell | step median ms | tool call median ms | tool call vs {base} |\n|---|---|---|---|")
            for shell, (step, tool) in medians.items():
                print(f"| {shell} | {step * 1000:.2f} | {tool * 1000:.2f} | {tool / medians[base][1]:.2f}x |")


if __name__ == "__main__":
    main()
