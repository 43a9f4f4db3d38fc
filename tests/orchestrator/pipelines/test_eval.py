"""`nightowl eval` against scripted models of known quality over real HTTP, with real sandboxes and test checks."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.scripted_server import ScriptedServer
from tests.helpers import git
from tests.orchestrator.helpers import SANDBOX
from training.evaluation.metrics import compare, outcome_of, paired_bootstrap

ROOT = Path(__file__).resolve().parents[3]
N_TASKS = 8


def make_bench(tmp_path: Path) -> tuple[Path, Path]:
    """A repo and 8 tasks "add fN() returning N", each with its reference patch and a test check."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "calc")
    head = git(repo, "rev-parse", "HEAD").strip()
    tasks = []
    for n in range(N_TASKS):
        reference = (f"diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,5 @@\n"
                     f" def add(a, b):\n     return a + b\n+\n+def f{n}():\n+    return {n}\n")
        check = (f"diff --git a/check_{n}.sh b/check_{n}.sh\nnew file mode 100644\n--- /dev/null\n+++ b/check_{n}.sh\n"
                 f"@@ -0,0 +1 @@\n+grep -q 'return {n}$' calc.py\n")
        tasks.append({"id": f"f{n}", "task": f"Add a function f{n}() to calc.py that returns {n}.", "commit": head,
                      "reference_patch": reference,
                      "tests": {"files": [f"check_{n}.sh"], "patch": check, "command": f"sh check_{n}.sh"}})
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return repo, path


def solver(solves: Callable[[int], bool]) -> Callable[[dict], dict]:
    """Solves task n when `solves(n)`: appends fN and submits; otherwise answers in prose (no tool call)."""
    def respond(request: dict) -> dict:
        user = next(m["content"] for m in request["messages"] if m["role"] == "user")
        n = int(re.search(r"function f(\d+)\(\)", user).group(1))
        if not solves(n):
            return {"content": f"You should add f{n} to calc.py."}
        if not any(m["role"] == "assistant" for m in request["messages"]):
            return {"tool_calls": [{"name": "bash", "arguments": {
                "command": f"printf '\\ndef f{n}():\\n    return {n}\\n' >> calc.py"}}]}
        return {"tool_calls": [{"name": "submit", "arguments": {}}]}
    return respond


def run_eval(tasks: Path, out: Path, servers: list[ScriptedServer], *extra: str) -> dict:
    args = [sys.executable, "-m", "orchestrator.cli.main", "eval", "--tasks", str(tasks), "--out", str(out),
            "--sandbox", SANDBOX, "--max-steps", "4", "--workers", "4", "--json"]
    for s in servers:
        args += ["--model", s.model, "--base-url", s.base_url]
    proc = subprocess.run([*args, *extra], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    saved = json.loads((out / "eval.json").read_text())
    assert saved["format"] == "nightowl.eval/1"  # the file says its format; the printed object is the same eval
    assert result == {k: v for k, v in saved.items() if k not in ("per_task", "format")}
    return result


def test_eval_good_against_bad_model_metrics_resolve_cost_and_verdicts(tmp_path: Path) -> None:
    repo, tasks = make_bench(tmp_path)
    with ScriptedServer(solver(lambda n: False), model="weak") as weak, \
         ScriptedServer(solver(lambda n: True), model="strong") as strong:
        result = run_eval(tasks, tmp_path / "eval", [weak, strong], "--repo", str(repo), "--metric", "recall",
                          "--price", "strong=2.5")
        weak_m, strong_m = result["models"]
        assert (weak_m["model"], strong_m["model"]) == ("weak", "strong")
        assert weak_m["tasks"] == strong_m["tasks"] == N_TASKS
        assert weak_m["tool_call_validity"] == 0.0 and weak_m["submit_rate"] == 0.0 and weak_m["mean_recall"] == 0.0
        assert weak_m["resolve_rate"] == 0.0 and weak_m["cost_per_task"] is None
        assert strong_m["tool_call_validity"] == 1.0 and strong_m["submit_rate"] == 1.0
        assert strong_m["mean_recall"] == 1.0 and strong_m["recall_distribution"]["1.0"] == N_TASKS
        assert strong_m["resolve_rate"] == 1.0 and strong_m["resolve_tasks"] == N_TASKS
        # cost from the tokens the server reported, as recorded in the trajectories
        tokens = [json.loads((Path(r) / "trajectory.json").read_text())["usage"]["total_tokens"]
                  for r in (tmp_path / "eval" / "models").glob("strong-*/runs/*")]
        assert len(tokens) == N_TASKS and strong_m["mean_tokens"] == pytest.approx(sum(tokens) / N_TASKS)
        assert strong_m["cost_per_task"] == pytest.approx(sum(tokens) / N_TASKS * 2.5 / 1e6)
        c = result["comparison"]
        assert (c["a"], c["b"], c["metric"], c["verdict"]) == ("weak", "strong", "recall", "better")
        assert c["diff"] == 1.0 and c["ci"] == [1.0, 1.0]
        # the user's repo got no branches from an eval
        assert "nightowl/" not in git(repo, "branch", "--list")

        again = run_eval(tasks, tmp_path / "eval-rev", [strong, weak], "--repo", str(repo), "--metric", "submit")
        assert again["comparison"]["verdict"] == "worse" and again["comparison"]["diff"] == -1.0


def test_eval_equal_models_are_not_shown_apart(tmp_path: Path) -> None:
    repo, tasks = make_bench(tmp_path)
    with ScriptedServer(solver(lambda n: n % 2 == 0), model="evens") as evens, \
         ScriptedServer(solver(lambda n: n % 2 == 1), model="odds") as odds:
        result = run_eval(tasks, tmp_path / "eval", [evens, odds], "--repo", str(repo))
    a, b = result["models"]
    assert a["submit_rate"] == b["submit_rate"] == 0.5 and a["mean_recall"] == b["mean_recall"] == 0.5
    c = result["comparison"]
    assert c["diff"] == 0.0 and c["ci"][0] < 0 < c["ci"][1] and c["verdict"] == "not shown"


def test_a_hosted_model_gets_its_own_url_and_key(tmp_path: Path, monkeypatch) -> None:
    repo, tasks = make_bench(tmp_path)
    monkeypatch.setenv("FRONTIER_KEY", "sk-test-123")
    with ScriptedServer(solver(lambda n: n < 2), model="local") as local, \
         ScriptedServer(solver(lambda n: True), model="frontier", api_key="sk-test-123") as hosted:
        result = run_eval(tasks, tmp_path / "eval", [local, hosted], "--repo", str(repo), "--api-key-env",
                          "NIGHTOWL_API_KEY", "--api-key-env", "FRONTIER_KEY", "--price", "frontier=3")
        assert len(hosted.chat_requests()) >= 2 * N_TASKS  # every request carried the key (else 401)
    local_m, hosted_m = result["models"]
    assert local_m["submit_rate"] == 0.25 and hosted_m["submit_rate"] == 1.0 and hosted_m["cost_per_task"] > 0
    assert result["comparison"]["verdict"] == "better"


def test_eval_bad_input_is_one_line(tmp_path: Path) -> None:
    repo, tasks = make_bench(tmp_path)
    base = [sys.executable, "-m", "orchestrator.cli.main", "eval", "--tasks", str(tasks), "--out", str(tmp_path / "o"),
            "--repo", str(repo), "--sandbox", SANDBOX]
    with ScriptedServer(solver(lambda n: True), model="m") as server, \
         ScriptedServer(solver(lambda n: True), model="h", api_key="secret") as hosted:
        cases = {
            "answered 401": [*base, "--model", "h", "--base-url", hosted.base_url, "--api-key-env", "NO_SUCH_KEY_VAR"],
            "--price": [*base, "--model", "m", "--base-url", server.base_url, "--price", "other=1"],
            "once per --model": [*base, "--model", "m", "--model", "n", "--base-url", server.base_url,
                                 "--base-url", server.base_url, "--base-url", server.base_url],
            "does not serve 'nope'": [*base, "--model", "nope", "--base-url", server.base_url],
            "--metric must be": [*base, "--model", "m", "--base-url", server.base_url, "--metric", "vibes"],
        }
        for needle, args in cases.items():
            proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)
            assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, (needle, proc.stderr)
    assert not (tmp_path / "o").exists()


def test_paired_bootstrap_and_pairing() -> None:
    diff, (low, high) = paired_bootstrap([0.0] * 10, [1.0] * 10)
    assert diff == 1.0 and (low, high) == (1.0, 1.0)
    diff, (low, high) = paired_bootstrap([0, 1] * 10, [1, 0] * 10)
    assert diff == 0.0 and low < 0 < high
    diff, (low, high) = paired_bootstrap([0.0] * 18 + [1.0] * 2, [1.0] * 20, seed=1)
    assert diff == pytest.approx(0.9) and 0.7 < low <= 0.9 <= high <= 1.0
    ref = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    good = outcome_of("t1", {"exit_status": "submitted", "patch": ref, "steps": [], "usage": {}}, ref)
    missing = outcome_of("t2", None, ref)
    assert good.recall == 1.0 and missing.recall == 0.0 and missing.exit_status == "missing"
    # only tasks both sides ran are paired
    c = compare("a", [missing], "b", [good], "recall")
    assert c.tasks == 0 and c.verdict == "not shown"
