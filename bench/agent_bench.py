"""Per-step overhead of the agent loop with an instant scripted model (real HTTP, real git, real commands).

    python bench/agent_bench.py [--steps 200] [--sandbox local|auto]

Each step: one HTTP round trip to a scripted server, parsing, one `bash` call of `echo N`, the trajectory
rewritten atomically. Reported side by side with a plain subprocess running the same command, so the
loop's own cost is the difference.
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


def respond(request: dict) -> dict:
    turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo {turn}"}}]}


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sandbox", default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(respond) as server:
        repo = make_repo(Path(tmp))
        plain = []
        for i in range(args.steps):
            t = time.perf_counter()
            subprocess.run(["bash", "-c", f"echo {i}"], capture_output=True, cwd=repo)
            plain.append(time.perf_counter() - t)
        # Progress is reported after the first save (no step yet), after every step, and once more when a limit
        # ends the run without a new step: keep the first report at each step count, so that step i runs
        # from the report with i steps to the report with i + 1.
        stamps: dict[int, float] = {}
        request = RunRequest(repo=repo, task="benchmark", sandbox=args.sandbox, out_dir=Path(tmp) / "runs",
                             model=ModelConfig(base_url=server.base_url, model=server.model),
                             agent=AgentConfig(max_steps=args.steps, stuck_repeats=10**6))
        start = time.perf_counter()
        outcome = run_task(request, progress=lambda t: stamps.setdefault(len(t.steps), time.perf_counter()))
        total = time.perf_counter() - start
        traj = load_trajectory(outcome.trajectory_path)
        n = len(traj.steps)
        per_step = [stamps[i + 1] - stamps[i] for i in range(n)]
        model_s = [s.model_duration_s for s in traj.steps]
        tool_s = [s.tools_duration_s for s in traj.steps]
        own = [p - m - t for p, m, t in zip(per_step, model_s, tool_s)]
        quarter = max(1, n // 4)
        rows = [
            ("plain subprocess `bash -c 'echo N'`", plain),
            ("agent step, total", per_step),
            ("  model call (HTTP round trip, instant server)", model_s),
            (f"  tool call ({args.sandbox} sandbox)", tool_s),
            ("  rest of the step (parse, history, atomic save)", own),
            (f"agent step, steps 1-{quarter}", per_step[:quarter]),
            (f"agent step, steps {n - quarter + 1}-{n}", per_step[-quarter:]),
        ]
        print(f"`python bench/agent_bench.py --steps {args.steps} --sandbox {args.sandbox}` on {os.cpu_count()} cores, "
              f"kernel {platform.release()}, Python {platform.python_version()}, uid {os.geteuid()}, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        print(f"{n} steps in {total:.2f} s ({n / total:.1f} steps/s, including workspace and sandbox set-up "
              f"{(stamps[0] - start) * 1000:.0f} ms), exit {traj.exit_status.value}, "
              f"trajectory {outcome.trajectory_path.stat().st_size / 1024:.0f} KiB\n")
        print("| what | median ms | p90 ms |\n|---|---|---|")
        for name, values in rows:
            print(f"| {name} | {statistics.median(values) * 1000:.2f} | {pct(values, 0.9) * 1000:.2f} |")
        print(f"\nstep / plain-subprocess ratio (median): {statistics.median(per_step) / statistics.median(plain):.1f}x")


if __name__ == "__main__":
    main()
