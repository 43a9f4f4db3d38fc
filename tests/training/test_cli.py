"""`nightowl export` / `train` / `adapter` on bad input: one line, exit code 2, nothing written; export's summary."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli.main import app
from tests.training.helpers import conversation, make_shift, trajectory

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_export_prints_counts_and_refuses_bad_input(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")],
                                            "b": [trajectory(conversation("b"), "x", exit_status="stuck")]})
    ok = run("export", str(shift), "--out", str(tmp_path / "ds"))
    assert ok.exit_code == 0, ok.output
    assert "1 train + 0 val rows from 2 trajectories" in ok.output and "not_submitted 1" in ok.output
    for args, message in (
        (["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "is not a directory"),
        (["export", str(shift), "--out", str(tmp_path / "ds")], "not empty"),
        (["export", str(shift), "--out", str(tmp_path / "y"), "--val-share", "1.5"], "--val-share: Input should be less than 1"),
        (["export", str(shift), "--out", str(tmp_path / "z"), "--max-tokens", "100"], "needs --tokenizer"),
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_train_refuses_bad_input_before_loading_anything(tmp_path: Path) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "adapter_config.json").write_text("{}")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("{not json\n")
    for args, message in (
        (["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "nightowl export"),
        (["--data", str(ds), "--out", str(tmp_path / "done")], "already holds a trained result"),
        (["--data", str(ds), "--out", str(tmp_path / "o"), "--packing", "always"], "packing"),
        (["--data", str(ds), "--out", str(tmp_path / "o"), "--rank", "0"], "rank"),
    ):
        result = run("train", "--base", str(tmp_path / "model"), *args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_adapter_load_needs_an_adapter_directory(tmp_path: Path) -> None:
    result = run("adapter", "load", "round1", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "no adapter_config.json" in result.output
    (tmp_path / "adapter_config.json").write_text("{}")
    result = run("adapter", "load", "round1", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "cannot reach the model server" in result.output


def test_train_with_a_missing_base_model_is_a_user_error(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")]})
    assert run("export", str(shift), "--out", str(tmp_path / "ds")).exit_code == 0
    result = run("train", "--base", str(tmp_path / "no-model"), "--data", str(tmp_path / "ds"), "--out",
                 str(tmp_path / "o"))
    assert result.exit_code == 2 and "cannot load a tokenizer" in result.output and "internal error" not in result.output
