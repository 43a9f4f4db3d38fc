"""`nightowl report` without a browser: directory kinds, hostile and broken inputs, the command's errors."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.scripted_server import ScriptedServer
from orchestrator.report import KINDS, build_report, detect_kinds
from orchestrator.report.generate_kind import collect as collect_generate
from orchestrator.report.model import ReportOptions
from orchestrator.report.svg import bar_chart, line_chart, nice_ticks
from orchestrator.report.training_kind import collect as collect_training
from tests.orchestrator.helpers import SANDBOX, make_repo

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "</script><script>window.bad=1</script><!-- & \u2028"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real agent run (scripted model over HTTP, real git, real sandbox) whose reply holds markup."""
    root = tmp_path_factory.mktemp("report-run")
    repo = make_repo(root / "repo")
    script = [{"content": HOSTILE, "reasoning_content": "think <b>", "tool_calls": [
                  {"name": "bash", "arguments": {"command": "echo changed > README.md"}}]},
              {"tool_calls": [{"name": "submit", "arguments": {}}]}, {"tool_calls": [{"name": "submit", "arguments": {}}]}]
    with ScriptedServer(script) as server:
        outcome = run_task(RunRequest(repo=repo, task="change the readme", out_dir=root / "runs", sandbox=SANDBOX,
                                      create_branch=False, model=ModelConfig(base_url=server.base_url, model="scripted")))
    assert outcome.exit_status.value == "submitted"
    return outcome.run_dir


def script_blocks(html: str) -> list[str]:
    return re.findall(r"<script[^>]*>", html)


def test_generate_directory_rows_recall_and_broken_lines(run_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(run_dir, tmp_path / "runs" / "a")
    samples = [
        {"id": "s1", "file": "a.py", "function": "f", "language": "python", "category": "bug", "t1_run_dir": "runs/a",
         "t2_run_dir": str(tmp_path / "runs" / "a"), "t1_patch": "", "t2_patch": "", "pr": "fix", "recall": 1.0,
         "matched": 2, "total": 2},
        {"id": "s2", "t1_run_dir": "runs/gone", "t1_patch": "+x\n", "t2_run_dir": None, "recall": 0.25, "matched": 1,
         "total": 4, "new_field": [1, 2]},
        {"id": "s3", "recall": None, "matched": 0, "total": 0},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples) + "{torn line\n")
    section = collect_generate(tmp_path, ReportOptions())
    assert [r["id"] for r in section.rows] == ["s1", "s2", "s3"]
    s1, s2, s3 = section.rows
    assert s1["t1"] == s1["t2"] == "submitted" and s1["steps"] == 6 and s1["tokens"] > 0
    assert s2["t1"] == "missing" and s2["_views"][0]["missing"].startswith("no trajectory at")
    assert s2["_views"][0]["patch"] == "+x\n"
    assert len(section.trajectories) == 2
    assert section.notes == ["1 unreadable line(s) in samples.jsonl"]
    summary = dict(section.summary)
    assert summary["recall"].startswith("mean 0.625, median 0.625, 1 at 1.0")
    assert summary["recall undefined (T1 changed no line)"] == "1"
    histogram = section.plots[0]
    assert "<title>0.9: 1</title>" in histogram and "<title>0.2: 1</title>" in histogram and "<title>n/a: 1</title>" in histogram


def test_training_report_curves_and_unknown_fields(tmp_path: Path) -> None:
    (tmp_path / "training_report.json").write_text(json.dumps({
        "loss": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "eval_loss": [{"step": 2, "eval_loss": 1.7}],
        "lr": [{"step": 1, "learning_rate": 1e-4}], "tokens_per_s": 812.5, "adapter": "out/adapter",
        "future": {"nested": True}, "notes": ["a", "b"]}))
    section = collect_training(tmp_path, ReportOptions())
    assert [p.split("aria-label=\"")[1].split("\"")[0] for p in section.plots] == ["training and eval loss",
                                                                                 "learning_rate by step"]
    summary = dict(section.summary)
    assert summary["tokens_per_s"] == "812.5" and summary["future"] == '{"nested": true}' and summary["notes"] == '["a", "b"]'
    (tmp_path / "training_report.json").write_text('{"loss": [')
    broken = collect_training(tmp_path, ReportOptions())
    assert broken.plots == [] and "not valid JSON" in broken.notes[0]


def test_hostile_and_non_utf8_content_stays_data(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    shutil.copytree(run_dir, run)
    raw = (run / "trajectory.json").read_bytes().replace(b"change the readme", b"change the \xff\xfe readme")
    (run / "trajectory.json").write_bytes(raw)
    (tmp_path / "samples.jsonl").write_bytes(json.dumps({"id": HOSTILE, "t1_run_dir": "runs/a", "recall": 0.5}).encode()
                                             + b"\n")
    html = build_report(tmp_path)
    # our data block, one trajectory block, our script: nothing the content carried became an element
    assert len(script_blocks(html)) == 3 and "window.bad=1</script>" not in html and "<b>" not in html
    block = html.split('<script type="application/json" id="t-0-g0">')[1].split("</script>")[0]
    view = json.loads(block)
    assert view["task"] == "change the \ufffd\ufffd readme"
    assert view["messages"][2]["content"] == HOSTILE and view["messages"][2]["reasoning"] == "think <b>"
    assert "+changed" in view["patch"]


def test_svg_labels_are_escaped_and_axes_cover_the_data() -> None:
    svg = bar_chart("by <status>", [("<script>x</script>", 3), ("a&b", 1)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg
    assert nice_ticks(0, 9.3)[-1] >= 9.3 and nice_ticks(0, 30)[-1] == 30
    line = line_chart("t", {"s": [(0, 0), (9.3, 30)]}, "x", "y")
    assert "<polyline" in line


def test_a_directory_gets_one_section_per_kind_it_holds(tmp_path: Path) -> None:
    assert [k.name for k in KINDS] == ["shift", "generate", "training"]
    (tmp_path / "samples.jsonl").write_text("")
    (tmp_path / "training_report.json").write_text("{}")
    assert [k.name for k in detect_kinds(tmp_path)] == ["generate", "training"]


def nightowl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_report_command_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = {
        (str(tmp_path / "missing"),): "is not a directory",
        (str(tmp_path),): "holds no report data",
    }
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "samples.jsonl").write_text("")
    (tmp_path / "gen" / "report.html").write_text("kept")
    cases[(str(tmp_path / "gen"), "--usd-per-mtok", "cheap")] = "--usd-per-mtok must be"
    cases[(str(tmp_path / "gen"), "--out", str(tmp_path / "nowhere" / "r.html"))] = "does not exist"
    for args, message in cases.items():
        result = nightowl(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "gen" / "report.html").read_text() == "kept"
    result = nightowl(str(tmp_path / "gen"))
    assert result.returncode == 0 and "report written to" in result.stdout
    assert (tmp_path / "gen" / "report.html").read_text().startswith("<!doctype html>")
