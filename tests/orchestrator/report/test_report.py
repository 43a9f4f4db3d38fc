"""`nightowl report` without a browser: directory kinds, hostile and broken inputs, the command's errors."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.scripted_server import ScriptedServer
from orchestrator.report import KINDS, build_report, detect_kinds
from orchestrator.report.eval_kind import collect as collect_eval
from orchestrator.report.flywheel_kind import collect as collect_flywheel
from orchestrator.report.generate_kind import collect as collect_generate
from orchestrator.report.model import ReportOptions
from orchestrator.report.svg import bar_chart, line_chart, nice_ticks
from orchestrator.report.training_kind import collect as collect_training
from tests.helpers import nightowl
from tests.orchestrator.helpers import SANDBOX, make_repo

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
    assert [k.name for k in KINDS] == ["shift", "generate", "training", "eval", "flywheel"]
    (tmp_path / "samples.jsonl").write_text("")
    (tmp_path / "training_report.json").write_text("{}")
    assert [k.name for k in detect_kinds(tmp_path)] == ["generate", "training"]


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
        result = nightowl("report", *args, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (tmp_path / "gen" / "report.html").read_text() == "kept"
    result = nightowl("report", str(tmp_path / "gen"), timeout=120)
    assert result.returncode == 0 and "report written to" in result.stdout
    assert (tmp_path / "gen" / "report.html").read_text().startswith("<!doctype html>")


# The eval and flywheel shapes below are the ones the code writes: orchestrator/pipelines/evaluate.py `run_eval`
# (eval.json: models = training.evaluation.metrics.ModelMetrics dumps, comparison(s) = Comparison dumps, per_task =
# TaskOutcome dumps by model) and orchestrator/pipelines/flywheel.py `finish_round` (rounds.jsonl lines, round-N/report.md,
# DIR/best.json = Best; train writes round-N/adapter/training_report.json; the eval runs into round-N/eval/).
def model_metrics(model: str, recall: float, submit: float, cost: float | None = None) -> dict:
    return {"model": model, "tasks": 2, "tool_call_validity": 0.75, "submit_rate": submit, "mean_recall": recall,
            "recall_distribution": {"0.0": 1, "0.5": 0, "0.9": 0, "1.0": 1},
            "resolve_rate": None, "resolve_tasks": 0, "mean_steps": 2.0, "mean_tokens": 1234.0, "mean_wall_s": 1.5,
            "cost_per_task": cost, "cost_basis": None if cost is None else "2 USD per million tokens",
            "exit_status": {"submitted": 2}}


def outcome(task_id: str, recall: float | None, submitted: bool = True, resolved: bool | None = None) -> dict:
    return {"task_id": task_id, "exit_status": "submitted" if submitted else "max_steps", "submitted": submitted,
            "steps": 2, "valid_steps": 2, "tokens": 600, "wall_s": 0.8, "recall": recall, "resolved": resolved}


def comparison(a: str, b: str, diff: float, ci: list[float], verdict: str) -> dict:
    return {"a": a, "b": b, "metric": "recall", "tasks": 2, "diff": diff, "ci": ci, "verdict": verdict}


def eval_object(a: str, b: str, verdict: str = "better") -> dict:
    c = comparison(a, b, 0.5, [0.25, 0.75], verdict)
    return {"tasks_file": "tasks.jsonl", "repo": "/r", "complete": True, "metric": "recall",
            "models": [model_metrics(a, 0.25, 0.5), model_metrics(b, 0.75, 1.0, cost=0.0025)],
            "comparison": c, "comparisons": [c],
            "per_task": {a: [outcome("t-000", 0.5), outcome("t-001", 0.0, submitted=False)],
                         b: [outcome("t-000", 1.0, resolved=True), outcome("t-001", 0.5, resolved=False)]}}


@pytest.fixture(scope="module")
def model_shift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-task shift (scripted model over HTTP, real sandbox), as `nightowl eval` keeps one per model."""
    from orchestrator.shift.engine import Shift, ShiftOptions, file_source
    from tests.orchestrator.helpers import agent_reply, write_tasks
    root = tmp_path_factory.mktemp("eval-shift")
    repo = make_repo(root / "repo")
    with ScriptedServer(agent_reply) as server:
        report = Shift(ShiftOptions(repo=repo, out=root / "shift", model="scripted", base_urls=[server.base_url], workers=2,
                                    sandbox=SANDBOX, heartbeat_s=0.2, max_attempts=1),
                       sources=[file_source(write_tasks(root / "tasks.jsonl", 2))]).run()
    assert report.complete
    return root / "shift"


def test_eval_directory_metrics_comparison_plots_and_task_rows(model_shift: Path, tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text(json.dumps(eval_object(HOSTILE, "scripted")))
    shutil.copytree(model_shift, tmp_path / "models" / "scripted-1234abcd")
    assert [k.name for k in detect_kinds(tmp_path)] == ["eval"]
    section = collect_eval(tmp_path, ReportOptions())
    metrics, compared = section.tables
    assert metrics.header[:4] == ["model", "tasks", "tool-call validity", "submit rate"]
    assert metrics.rows[0][:6] == [HOSTILE, "2", "0.750", "0.500", "0.250", "-"]
    assert metrics.rows[1][0] == "scripted" and metrics.rows[1][-2:] == ["0.0025", "2 USD per million tokens"]
    assert compared.rows == [[HOSTILE, "scripted", "recall", "2", "0.500", "[0.250, 0.750]", "better"]]
    assert dict(section.summary)["comparison"] == f"scripted vs {HOSTILE} on recall: +0.500, 95% CI [0.250, 0.750] " \
                                                 "over 2 tasks: better"
    titles = [p.split('aria-label="')[1].split('"')[0] for p in section.plots]
    # resolve rate is null for every model: no plot for it; cost only for the priced model
    assert titles[:5] == ["tool call validity", "submit rate", "mean recall", "mean tokens", "cost per task"]
    assert len(titles) == 7 and "<title>1.0: 1</title>" in section.plots[5]
    assert [(r["model"], r["task"], r["submitted"], r["recall"], r["resolved"]) for r in section.rows] == [
        (HOSTILE, "t-000", "yes", 0.5, ""), (HOSTILE, "t-001", "no", 0.0, ""),
        ("scripted", "t-000", "yes", 1.0, "yes"), ("scripted", "t-001", "yes", 0.5, "no")]
    # the scripted model's rows open its shift's trajectories; the model without a shift directory has none
    assert section.rows[0]["_views"] == [] and len(section.trajectories) == 2
    assert all(v["ref"] in section.trajectories for r in section.rows[2:] for v in r["_views"])
    assert all(r["_views"] for r in section.rows[2:])
    html = build_report(tmp_path)
    assert len(script_blocks(html)) == 4 and "window.bad=1</script>" not in html
    assert "<td>&lt;/script&gt;&lt;script&gt;window.bad=1&lt;/script&gt;" in html


def test_eval_directory_without_per_task_and_broken(model_shift: Path, tmp_path: Path) -> None:
    data = eval_object("a", "b", verdict="not shown")
    del data["per_task"], data["comparisons"]
    data["models"][0]["future_field"] = [1]
    (tmp_path / "eval.json").write_text(json.dumps(data))
    shutil.copytree(model_shift, tmp_path / "models" / "b-1")
    section = collect_eval(tmp_path, ReportOptions())
    assert section.tables[1].rows[0][-1] == "not shown"
    assert [(r["model"], r["task"], r["result"]) for r in section.rows] == [("scripted", "t-000", "submitted"),
                                                                          ("scripted", "t-001", "submitted")]
    (tmp_path / "eval.json").write_text('{"models": [')
    assert "not valid JSON" in collect_eval(tmp_path, ReportOptions()).notes[0]
    (tmp_path / "eval.json").write_text("{}")
    empty = collect_eval(tmp_path, ReportOptions())
    assert empty.notes == ["eval.json lists no models"] and empty.tables == []


def flywheel_round(out: Path, n: int, promoted: bool, against: str, candidate_recall: float, against_recall: float,
                   losses: list[float]) -> dict:
    rdir = out / f"round-{n}"
    (rdir / "eval").mkdir(parents=True)
    (rdir / "adapter").mkdir()
    candidate = f"{out.name}-r{n}"
    c = comparison(against, candidate, candidate_recall - against_recall, [-0.1, 0.2], "better" if promoted else "not shown")
    evaluation = {"models": [model_metrics(against, against_recall, 1.0), model_metrics(candidate, candidate_recall, 1.0)],
                  "comparison": c, "comparisons": [c], "metric": "recall", "complete": True, "per_task": {}}
    (rdir / "eval" / "eval.json").write_text(json.dumps(evaluation))
    (rdir / "adapter" / "training_report.json").write_text(json.dumps(
        {"loss": [{"step": i + 1, "loss": x} for i, x in enumerate(losses)], "eval_loss": []}))
    (rdir / "report.md").write_text(f"# Flywheel round {n}\n\n{HOSTILE}\n")
    best = candidate if promoted else against
    return {"round": n, "candidate": candidate, "against": against, "promoted": promoted, "verdict": c["verdict"],
            "metric": "recall", "diff": c["diff"], "ci": c["ci"], "best": best,
            "seconds": {"generate": 10.0, "export": 1.0, "train": 20.5, "load": 0.5, "eval": 8.0, "decide": 0.0}}


def test_flywheel_directory_rounds_plots_and_best(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    out.mkdir()
    lines = [flywheel_round(out, 1, True, "base", 0.5, 0.125, [2.0, 1.0]),
             flywheel_round(out, 2, False, "fw-r1", 0.25, 0.5, [3.0, 2.5, 2.4])]
    (out / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in reversed(lines)) + "{torn\n")
    (out / "best.json").write_text(json.dumps({"model": "fw-r1", "adapter": str(out / "round-1" / "adapter"), "round": 1}))
    assert [k.name for k in detect_kinds(out)] == ["flywheel"]
    section = collect_flywheel(out, ReportOptions())
    assert [(r["round"], r["candidate_value"], r["against_value"], r["promoted"], r["verdict"], r["seconds"])
            for r in section.rows] == [(1, 0.5, 0.125, "yes", "better", 40.0), (2, 0.25, 0.5, "no", "not shown", 40.0)]
    assert section.rows[0]["ci"] == "[-0.100, 0.200]" and section.notes == ["1 unreadable line(s) in rounds.jsonl"]
    summary = dict(section.summary)
    assert summary["rounds"] == "2" and summary["promoted"] == "1"
    assert summary["current best"].startswith("fw-r1 (round 1, adapter ")
    titles = [p.split('aria-label="')[1].split('"')[0] for p in section.plots]
    assert titles == ["eval recall per round: candidate vs the best before it",
                      "difference per round (candidate - best) with its 95% CI", "training loss per round"]
    assert "<title>round 1</title>" in section.plots[2] and "<title>round 2</title>" in section.plots[2]
    assert [name for name, _ in section.texts] == ["round 1: report.md", "round 2: report.md"]
    html = build_report(out)
    assert len(script_blocks(html)) == 2 and "window.bad=1</script>" not in html


def test_flywheel_directory_before_any_round_and_missing_round_files(tmp_path: Path) -> None:
    (tmp_path / "rounds.jsonl").write_text("")
    empty = collect_flywheel(tmp_path, ReportOptions())
    assert empty.rows == [] and empty.notes == ["rounds.jsonl holds no finished round yet"]
    assert dict(empty.summary)["current best"] == "?"
    (tmp_path / "rounds.jsonl").write_text(json.dumps({"round": 1, "promoted": False, "best": "base"}) + "\n")
    section = collect_flywheel(tmp_path, ReportOptions())
    assert section.rows[0]["candidate_value"] is None and section.rows[0]["ci"] == "-"
    assert dict(section.summary)["current best"] == "base" and len(section.plots) == 2
