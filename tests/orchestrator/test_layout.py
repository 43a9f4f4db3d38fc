"""File formats: what nightowl writes carries its version, files from before versions still read, and a file from a
newer nightowl is refused by every command that reads it in one line (exit 2, no traceback)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.file_format import NewerFormatError
from orchestrator.cli.main import app
from orchestrator.layout import (
    BEST_FILE,
    ELAPSED_FILE,
    EVAL_FILE,
    ROUND_LINE,
    SAMPLE_LINE,
    best_json,
    eval_json,
    read_best_file,
    read_elapsed,
    read_eval,
    read_round_step,
    read_rounds,
    read_task_cache,
    round_step_json,
    rounds_jsonl,
    sample_line,
    task_cache_json,
)
from orchestrator.report import build_report
from orchestrator.report.eval_kind import METRIC_FIELDS, TABLE_FIELDS
from orchestrator.shift.events import EventLog
from tests.helpers import nightowl
from tests.training.helpers import conversation, make_generate, make_shift, trajectory
from training.dataset.sources import SOURCES, discover
from training.evaluation.metrics import METRICS, SHOWN, ModelMetrics, TaskOutcome, value

ROOT = Path(__file__).resolve().parents[2]
NEWER = "was written by a newer nightowl (format 9, this one reads up to 1): upgrade nightowl"
runner = CliRunner()


def assert_refused_in_one_line(output: str, path: Path) -> None:
    assert [line for line in output.splitlines() if NEWER in line] == [f"error: {path} {NEWER}"], output
    assert "Traceback" not in output


def test_written_files_carry_their_format_first() -> None:
    assert json.loads(eval_json({"models": []})) == {"format": "nightowl.eval/1", "models": []}
    assert [json.loads(line) for line in rounds_jsonl([{"round": 1}, {"round": 2}]).splitlines()] == [
        {"format": "nightowl.round/1", "round": 1}, {"format": "nightowl.round/1", "round": 2}]
    assert list(json.loads(best_json({"model": "m"}))) == ["format", "model"]
    assert sample_line({"id": "s1"}) == '{"format": "nightowl.sample/1", "id": "s1"}\n'


def test_the_event_log_stamps_every_line_and_listeners_see_the_event(tmp_path: Path) -> None:
    log, seen = EventLog(tmp_path / "events.jsonl"), []
    log.listeners.append(seen.append)
    log.emit("shift_start", workers=2)
    log.close()
    (line,) = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert line["format"] == "nightowl.event/1" and line["event"] == "shift_start" and line["workers"] == 2
    assert "format" not in seen[0] and seen[0]["event"] == "shift_start"


def test_files_from_before_versions_read_as_version_1(tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text(json.dumps({"models": [], "metric": "recall"}))
    (tmp_path / "rounds.jsonl").write_text('{"round": 1}\n' + ROUND_LINE.dumps({"round": 2}) + "\n")
    (tmp_path / "best.json").write_text('{"model": "base", "adapter": null, "round": 0}\n')
    assert read_eval(tmp_path / "eval.json")["metric"] == "recall"
    assert [r["round"] for r in read_rounds(tmp_path / "rounds.jsonl")] == [1, 2]
    assert read_rounds(tmp_path / "missing.jsonl") == []
    assert read_best_file(tmp_path / "best.json") == {"model": "base", "adapter": None, "round": 0}
    (tmp_path / "best.json").write_text(best_json({"model": "r1", "adapter": "/a", "round": 1}))
    assert read_best_file(tmp_path / "best.json") == {"model": "r1", "adapter": "/a", "round": 1}
    gen = make_generate(tmp_path / "gen", [{"id": "s1", "recall": 1.0, "t1": trajectory(conversation("t1"), "a"),
                                            "t2": trajectory(conversation("t2"), "b")}])
    assert "format" not in (gen / "samples.jsonl").read_text()  # the helper writes pre-version lines
    assert [c.source for c in discover(gen)] == ["svg-t1", "svg-t2"]
    html = build_report(tmp_path)
    assert "Flywheel" in html and "Eval" in html


def test_resume_records_are_versioned_and_old_ones_still_resume(tmp_path: Path) -> None:
    cache = tmp_path / "checks.json"
    cache.write_text('{"t-1": true, "t-2": false}\n')  # before versions: the bare mapping
    assert read_task_cache(cache) == {"t-1": True, "t-2": False}
    cache.write_text(task_cache_json({"format": True, "t-2": False}))
    assert json.loads(cache.read_text())["format"] == "nightowl.task-cache/2"
    assert read_task_cache(cache) == {"format": True, "t-2": False}  # a task id never collides with the field
    assert read_task_cache(tmp_path / "missing.json") == {}
    step = tmp_path / "load.json"
    step.write_text(round_step_json({"name": "r1", "seconds": 1.5}))
    assert read_round_step(step) == {"name": "r1", "seconds": 1.5}
    step.write_text('{"name": "r0"}\n')
    assert read_round_step(step) == {"name": "r0"}
    elapsed = tmp_path / "elapsed.json"
    elapsed.write_text(json.dumps(newer(ELAPSED_FILE, {"seconds": 3})))
    with pytest.raises(NewerFormatError, match="upgrade nightowl"):
        read_elapsed(elapsed)
    assert read_elapsed(tmp_path / "none.json") is None


def newer(fmt, data: dict) -> dict:
    return {**data, "format": f"nightowl.{fmt.kind}/9"}


def test_report_refuses_a_newer_file_of_every_kind_in_one_line(tmp_path: Path) -> None:
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "eval.json").write_text(json.dumps(newer(EVAL_FILE, {"models": []})))
    fly = tmp_path / "fly"
    fly.mkdir()
    (fly / "rounds.jsonl").write_text(json.dumps({"round": 1}) + "\n" + json.dumps(newer(ROUND_LINE, {"round": 2})))
    best = tmp_path / "best"
    best.mkdir()
    (best / "rounds.jsonl").write_text("")
    (best / "best.json").write_text(json.dumps(newer(BEST_FILE, {"model": "m"})))
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "samples.jsonl").write_text(json.dumps(newer(SAMPLE_LINE, {"id": "s1"})) + "\n")
    run = tmp_path / "run-gen"
    make_generate(run, [{"id": "s1", "recall": 1.0, "t1": trajectory(conversation("t1"), "a"), "t2": None}])
    t1 = next(run.rglob("trajectory.json"))
    t1.write_text(json.dumps({**json.loads(t1.read_text()), "format": "nightowl.trajectory/9"}))
    for directory, path in ((ev, ev / "eval.json"), (fly, fly / "rounds.jsonl"), (best, best / "best.json"),
                            (gen, gen / "samples.jsonl"), (run, t1)):
        result = nightowl("report", str(directory), "--out", str(tmp_path / "r.html"))
        assert result.returncode == 2, result.stderr
        assert_refused_in_one_line(result.stderr, path)
    assert not (tmp_path / "r.html").exists()


def test_export_and_train_refuse_newer_files_in_one_line(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")]})
    path = next(shift.rglob("trajectory.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": "nightowl.trajectory/9"}))
    result = runner.invoke(app, ["export", str(shift), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 2 and not (tmp_path / "ds").exists()
    assert_refused_in_one_line(result.output, path)

    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "samples.jsonl").write_text(json.dumps(newer(SAMPLE_LINE, {"id": "s1"})) + "\n")
    result = runner.invoke(app, ["export", str(gen), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert_refused_in_one_line(result.output, Path(f"{gen / 'samples.jsonl'}:1"))

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"messages": [], "tools": None, "metadata": {}}) + "\n")
    (data / "dataset.json").write_text(json.dumps({"format": "nightowl.dataset/9"}))
    result = runner.invoke(app, ["train", "--data", str(data), "--base", str(tmp_path / "base"),
                                 "--out", str(tmp_path / "adapter")])
    assert result.exit_code == 2, result.output
    assert_refused_in_one_line(result.output, data / "dataset.json")


def test_export_writes_a_versioned_card_and_reads_trajectories_of_another_kind_as_dropped(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")],
                                            "b": [trajectory(conversation("b"), "y")]})
    other = next(p for p in shift.rglob("trajectory.json") if "b." in p.parent.name)
    other.write_text(json.dumps({**json.loads(other.read_text()), "format": "nightowl.dataset/1"}))
    result = runner.invoke(app, ["export", str(shift), "--out", str(tmp_path / "ds"), "--val-share", "0"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert card["format"] == "nightowl.dataset/1" and card["dropped"] == {"unknown_format": 1}


def test_each_metric_is_one_registry_entry_that_every_consumer_reads() -> None:
    assert list(METRICS) == ["recall", "submit", "resolve", "validity"]  # --metric's choices, in this order
    assert all(m.field in ModelMetrics.model_fields for m in METRICS.values())
    assert METRIC_FIELDS == {name: m.field for name, m in METRICS.items()}
    assert [key for _, key, _ in TABLE_FIELDS[1:1 + len(SHOWN)]] == [m.field for m in SHOWN]
    outcome = TaskOutcome(task_id="t", exit_status="submitted", submitted=True, steps=4, valid_steps=3, tokens=1,
                          wall_s=1.0, recall=0.5, resolved=False)
    assert [value(outcome, name) for name in METRICS] == [0.5, 1.0, 0.0, 0.75]
    with pytest.raises(ValueError, match="unknown metric 'speed'"):
        value(outcome, "speed")


def test_export_sources_are_tried_in_registry_order(tmp_path: Path) -> None:
    assert [s.name for s in SOURCES] == ["generate", "shift", "run", "run directories"]
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")]})
    assert [c.task_id for c in discover(shift)] == ["a"]
    assert [c.task_id for c in discover(shift / "runs")] == ["a"]
    (run,) = (shift / "runs").iterdir()
    assert [c.task_id for c in discover(run)] == ["a"]
