"""The example repository's history (examples/calculator_history.py) is a benchmark `bench-history` can mine: its
held-out window yields tasks with reference patches and test checks that fail before the change and pass with
the reference patch, and HEAD is the quickstart's calculator."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "examples" / "calculator_history.py"


def build(dest: Path, via_make_example_repo: bool = False) -> Path:
    command = ([str(ROOT / "examples" / "make_example_repo.sh"), str(dest), "--history"] if via_make_example_repo
               else [sys.executable, str(SCRIPT), str(dest)])
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest


def git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, input=stdin, check=True)


def check_passes(repo: Path, command: str) -> bool:
    return subprocess.run(command, shell=True, cwd=repo, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("history") / "calculator", via_make_example_repo=True)


def test_the_history_is_reproducible_and_ends_at_the_quickstart_calculator(history: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again")
    assert git(again, "rev-parse", "HEAD").stdout == git(history, "rev-parse", "HEAD").stdout
    assert len(git(history, "rev-list", "HEAD").stdout.split()) == 29
    for name in ("calc.py", "test_calc.py"):
        assert (history / name).read_bytes() == (ROOT / "examples" / "calculator" / name).read_bytes()
    assert git(history, "status", "--porcelain").stdout == ""
    assert subprocess.run([sys.executable, str(SCRIPT), str(history)], capture_output=True).returncode != 0


def test_bench_history_yields_held_out_tasks_whose_checks_fail_before_and_pass_after(history: Path,
                                                                                   tmp_path: Path) -> None:
    tasks_file = tmp_path / "tasks.jsonl"
    result = CliRunner().invoke(app, ["bench-history", str(history), "--since", "2026-03-01", "--until",
                                      "2026-04-01", "--out", str(tasks_file), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tasks"] == 9 and summary["with_tests"] == 7 and summary["skipped"] == {}
    tasks = [json.loads(line) for line in tasks_file.read_text().splitlines()]
    assert tasks[0]["task"] == "Add sign(): -1, 0 or 1 by the sign of a number"
    work = tmp_path / "work"
    git(history, "worktree", "add", "-q", "--detach", str(work), tasks[0]["commit"])
    try:
        for task in tasks:
            assert task["reference_patch"].startswith("diff --git a/calc.py b/calc.py")
            if "tests" not in task:
                continue
            check = task["tests"]
            assert check["files"] == ["test_calc.py"] and "pytest" in check["command"]
            git(work, "checkout", "-q", "--force", "--detach", task["commit"])
            git(work, "apply", "-", stdin=check["patch"])
            assert not check_passes(work, check["command"]), f"{task['task']}: the check passes before the change"
            git(work, "apply", "-", stdin=task["reference_patch"])
            assert check_passes(work, check["command"]), f"{task['task']}: the reference patch fails the check"
    finally:
        git(history, "worktree", "remove", "--force", str(work))


def test_eval_reports_recall_and_resolve_rate_on_the_held_out_history(history: Path, tmp_path: Path) -> None:
    """An oracle that applies each task's reference patch against a model that submits at once, through the
    real `nightowl eval` (scripted servers, the real sandbox): recall and resolve rate separate them."""
    from agent.scripted_server import ScriptedServer

    runner = CliRunner()
    tasks_file = tmp_path / "tasks.jsonl"
    mined = runner.invoke(app, ["bench-history", str(history), "--since", "2026-03-01", "--until", "2026-04-01",
                                "--out", str(tasks_file)])
    assert mined.exit_code == 0, mined.output
    references = {t["task"]: t["reference_patch"] for t in map(json.loads, tasks_file.read_text().splitlines())}

    def oracle(request: dict) -> dict:
        if not any(m["role"] == "assistant" for m in request["messages"]):
            task = next(text for text in references if f"<task>\n{text}\n</task>" in request["messages"][1]["content"])
            return {"tool_calls": [{"name": "bash", "arguments": {
                "command": f"git apply <<'PATCH'\n{references[task]}PATCH"}}]}
        return {"tool_calls": [{"name": "submit", "arguments": {}}]}

    def idle(request: dict) -> dict:
        return {"tool_calls": [{"name": "submit", "arguments": {}}]}

    with ScriptedServer(oracle, model="oracle") as good, ScriptedServer(idle, model="idle") as bad:
        result = runner.invoke(app, ["eval", "--tasks", str(tasks_file), "--model", bad.model, "--model", good.model,
                                     "--base-url", bad.base_url, "--base-url", good.base_url, "--out",
                                     str(tmp_path / "eval"), "--max-steps", "4", "--metric", "resolve", "--json"])
    assert result.exit_code == 0, result.output
    idle_model, oracle_model = json.loads(result.output)["models"]
    assert idle_model["tasks"] == oracle_model["tasks"] == 9
    assert idle_model["mean_recall"] == 0.0 and oracle_model["mean_recall"] == 1.0
    assert idle_model["resolve_tasks"] == oracle_model["resolve_tasks"] == 7
    # The checks run in the environment the history's nightowl.toml declares (pytest in /env/venv), not the host's
    assert idle_model["resolve_rate"] == 0.0 and oracle_model["resolve_rate"] == 1.0, oracle_model

