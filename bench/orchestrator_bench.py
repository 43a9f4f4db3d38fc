"""Orchestrator throughput: agent steps/s and memory per agent for 1, 8, 32, 64 concurrent agents.

The model is instant (a scripted server on loopback); every step runs a real shell command in the
attempt's sandbox. Side by side we measure the ceiling set by the commands alone (the same commands in
as many threads, no agent, no store), so the table shows how close the orchestrator gets to it.

    .venv/bin/python bench/orchestrator_bench.py [--levels 1,8,32,64] [--steps 10] [--sandbox auto|local] [--write bench/ORCHESTRATOR_RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.loop import AgentConfig  # noqa: E402
from agent.scripted_server import ScriptedServer  # noqa: E402
from orchestrator.shift.engine import Shift, ShiftOptions  # noqa: E402
from orchestrator.shift.tasks import StaticTaskSource, TaskSpec  # noqa: E402

COMMAND = "echo step >> bench.log && ls -la > /dev/null && wc -l bench.log"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    def __init__(self) -> None:
        self.peak = rss_mb()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> "PeakRss":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


STEPS = 10


def reply(request: dict) -> dict:
    turns = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    if turns < STEPS:
        return {"tool_calls": [{"name": "bash", "arguments": {"command": COMMAND}}]}
    return {"tool_calls": [{"name": "submit", "arguments": {}}]}


def serve(steps: int, port_queue: "multiprocessing.Queue[int]") -> None:
    global STEPS
    STEPS = steps
    server = ScriptedServer(reply)
    # headers and body go out in two writes: without TCP_NODELAY, delayed ACKs add ~40 ms to every reply
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    server.requests = _Discard()  # do not keep every request body for the whole benchmark
    port_queue.put(server.httpd.server_address[1])
    server.httpd.serve_forever()


class _Discard(list):
    def append(self, item: object) -> None:
        pass


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    for args in (["init", "-q"], ["config", "user.email", "b@x"], ["config", "user.name", "b"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    for i in range(50):
        (path / f"file{i}.py").write_text(f"x = {i}\n" * 20)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "init"], check=True)
    return path


def shift_level(repo: Path, work: Path, url: str, agents: int, sandbox: str) -> dict:
    out = work / f"out-{agents}"
    tasks = [TaskSpec(id=f"b-{agents}-{i}", task=f"benchmark task {i}") for i in range(agents)]
    opts = ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[url], workers=agents, sandbox=sandbox,
                        agent=AgentConfig(max_steps=1000))
    cpu0, base = resource.getrusage(resource.RUSAGE_SELF), rss_mb()
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, wall0 = time.perf_counter(), time.time()
    with PeakRss() as peak:
        report = Shift(opts, sources=[StaticTaskSource(tasks, "bench")]).run()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert report.complete and report.counts["exit_status"] == {"submitted": agents}, report.counts
    steps = model_s = tools_s = gap_s = setup_s = 0.0
    gaps = 0
    for traj_path in out.glob("runs/*/trajectory.json"):
        traj = json.loads(traj_path.read_text())
        st = traj["steps"]
        steps += len(st)
        model_s += sum(s["model_duration_s"] for s in st)
        tools_s += sum(s["tools_duration_s"] for s in st)
        starts = [datetime.fromisoformat(s["started_at"]).timestamp() for s in st]
        # From the start of the shift to the agent's first model request: store, claim, server check, workspace
        # and sandbox creation, and waiting for a free worker all count.
        setup_s += starts[0] - wall0
        for a, b, s in zip(starts, starts[1:], st):
            gap_s += b - a - s["model_duration_s"] - s["tools_duration_s"]
            gaps += 1
    shutil.rmtree(out)
    return {"agents": agents, "steps": int(steps), "wall_s": wall, "steps_per_s": steps / wall,
            "model_ms_per_step": 1000 * model_s / steps, "tool_ms_per_step": 1000 * tools_s / steps,
            "between_steps_ms": 1000 * gap_s / max(1, gaps), "setup_ms_per_agent": 1000 * setup_s / agents,
            "in_step_share": (model_s + tools_s) / (wall * agents),
            "driver_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "children_cpu_s": (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime),
            "mb_per_agent": max(0.0, peak.peak - base) / agents}


def command_ceiling(repo: Path, work: Path, sandbox_kind: str, threads: int, total: int) -> float:
    """Commands/s with the same command through the same sandbox kind in `threads` threads, nothing else."""
    from sandbox.select import open_sandbox
    from sandbox.workspace import create_workspace, remove_workspace
    ws = create_workspace(repo, "HEAD", work / f"ceiling-{threads}")
    box = open_sandbox(sandbox_kind, ws)  # type: ignore[arg-type]
    left = [total]
    lock = threading.Lock()

    def go() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            box.execute(COMMAND, 60)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=go) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    rate = total / (time.perf_counter() - t0)
    box.close()
    remove_workspace(ws)
    return rate


def store_ops(work: Path, n: int = 2000) -> float:
    """The orchestrator's own bookkeeping per attempt (claim + heartbeat + finish transactions), per second."""
    from orchestrator.shift.store import Store
    store = Store(work / "store-bench")
    store.add_tasks([TaskSpec(id=f"s-{i}", task="x") for i in range(n)], "bench")
    t0 = time.perf_counter()
    for _ in range(n):
        claim = store.claim_next("http://x/v1", work / "runs")
        assert claim is not None
        store.heartbeat([claim[1].id], {claim[1].id: (1, 10)})
        store.finish_attempt(claim[1].id, "submitted", "", 1, 10, counts=True, final=True, branch="b")
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def model_call_cpu_ms(url: str, history_steps: int) -> float:
    """CPU per model call in the agent's OpenAI client, with a history of `history_steps` steps."""
    from agent.model import ModelConfig, OpenAIChatModel
    from agent.tools import TOOL_SPECS
    model = OpenAIChatModel(ModelConfig(base_url=url, model="scripted"))
    messages = [{"role": "system", "content": "s" * 2000}, {"role": "user", "content": "benchmark task"}]
    for i in range(history_steps):
        messages.append({"role": "assistant", "content": "", "tool_calls": [{"id": f"c{i}", "type": "function",
                         "function": {"name": "bash", "arguments": json.dumps({"command": COMMAND})}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 500})
    model.query(messages, TOOL_SPECS)
    t0 = time.process_time()
    for _ in range(10):
        model.query(messages, TOOL_SPECS)
    return 100 * (time.process_time() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--steps", type=int, default=20, help="bash steps per agent (then submit twice)")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--sandbox", default="auto", help="auto (bubblewrap; fails where it cannot run) or local")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="nightowl-bench-") as tmp:
        work = Path(tmp)
        repo = make_repo(work / "repo")
        sandbox = args.sandbox
        rows = []
        ports: multiprocessing.Queue[int] = multiprocessing.Queue()
        server = multiprocessing.Process(target=serve, args=(args.steps, ports), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
        try:
            for n in levels:
                row = shift_level(repo, work, url, n, sandbox)
                row["ceiling_cmds_per_s"] = command_ceiling(repo, work, sandbox, n, max(50, row["steps"]))
                rows.append(row)
                print(json.dumps(row), flush=True)
            extra = {"store_attempts_per_s": store_ops(work),
                     "client_cpu_ms": {h: model_call_cpu_ms(url, h) for h in (0, 10, 20)}}
            print(json.dumps(extra), flush=True)
        finally:
            server.terminate()
    table = render(rows, sandbox, args.steps, extra)
    print(table)
    if args.write:
        args.write.write_text(table)


def render(rows: list[dict], sandbox: str, steps: int, extra: dict) -> str:
    lines = [
        "## Orchestrator throughput (bench/orchestrator_bench.py)", "",
        f"`python bench/orchestrator_bench.py --levels {','.join(str(r['agents']) for r in rows)} --steps {steps}` on "
        f"{os.cpu_count()} cores, kernel {platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end, sandbox `{sandbox}`"
        + ". "
        f"Each agent: {steps} bash steps (`{COMMAND}`) then submit twice, against an instant scripted model "
        "over HTTP; every step saves the trajectory atomically and the store renews leases once a second.", "",
        "| agents | steps | wall s | agent steps/s | command ceiling cmds/s | model ms/step | tool ms/step "
        "| between steps ms | setup ms/agent | in model+tool | shift CPU ms/step | children CPU ms/step | RSS MB/agent |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['agents']} | {r['steps']} | {r['wall_s']:.2f} | {r['steps_per_s']:.1f} | "
                     f"{r['ceiling_cmds_per_s']:.1f} | {r['model_ms_per_step']:.1f} | {r['tool_ms_per_step']:.1f} | "
                     f"{r['between_steps_ms']:.1f} | {r['setup_ms_per_agent']:.0f} | {100 * r['in_step_share']:.0f}% | "
                     f"{1000 * r['driver_cpu_s'] / r['steps']:.1f} | {1000 * r['children_cpu_s'] / r['steps']:.1f} | "
                     f"{r['mb_per_agent']:.2f} |")
    lines += ["", "*agent steps/s* counts every agent step (bash and submit). *command ceiling*: the same command "
              "through the same sandbox kind in as many threads, with no agent, store or model. *setup ms/agent*: "
              "from the start of the shift to the agent's first model request (store, claim, server check, "
              "workspace and sandbox creation, waiting for a worker), averaged over the agents. *in model+tool*: "
              "the share of agent-seconds spent inside model or tool calls. *shift CPU* is the shift process's "
              "CPU, *children CPU* the sandboxed commands'. *RSS MB/agent*: the shift process's peak RSS growth "
              "divided by the agents.", "",
              f"Store bookkeeping alone (claim + heartbeat + finish, three SQLite WAL transactions): "
              f"{extra['store_attempts_per_s']:,.0f} attempts/s; the busiest level above finished "
              f"{max(r['agents'] / r['wall_s'] for r in rows):.1f} attempts/s.",
              "CPU per model call in the agent's OpenAI client (request building, HTTP, parsing), by history length: "
              + ", ".join(f"{h} steps {ms:.1f} ms" for h, ms in extra["client_cpu_ms"].items()) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
