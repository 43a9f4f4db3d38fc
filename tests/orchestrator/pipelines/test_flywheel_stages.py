"""The flywheel's steps become stage options through each command's own flags: the command lines `--dry-run`
prints are the options the stages run with (the user's --train-args and --generate-args included)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.cli.flywheel import command_options
from orchestrator.cli.main import app
from orchestrator.errors import UsageError
from orchestrator.pipelines.evaluate import EvalOptions
from orchestrator.pipelines.flywheel import Best, Flywheel, FlywheelOptions, failed
from orchestrator.pipelines.generate_run import GenerateOptions
from orchestrator.pipelines.stage_process import StageFailed
from orchestrator.serving.student import StudentServer
from tests.orchestrator.helpers import SANDBOX
from training.dataset.export import ExportOptions
from training.finetune.train import TrainOptions

ROOT = Path(__file__).resolve().parents[3]


def wheel(repo: Path, out: Path, **extra: object) -> Flywheel:
    options = FlywheelOptions(repo=repo, out=out, rounds=2, base="/models/base", base_name="base",
                              student_url="http://127.0.0.1:8123/v1", teacher_url="http://127.0.0.1:9/v1",
                              teacher_model="teacher", tasks=ROOT / "examples" / "calculator" / "tasks.yaml",
                              samples=3, sandbox=SANDBOX, **extra)
    return Flywheel(options, options_of=command_options(app), server=StudentServer(options.student_url))


def test_each_steps_command_line_is_read_into_its_stages_options(tmp_path: Path) -> None:
    repo = tmp_path / "calc"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    fly = wheel(repo, tmp_path / "fly", train_args=["--max-steps", "2", "--rank", "8"],
                generate_args=["--temperature", "0.9"])
    rdir, best = tmp_path / "fly" / "round-2", Best(model="fly-r1", adapter="/a", round=1)

    generate = fly.options_of(fly.generate_args(2, rdir, best))
    assert isinstance(generate, GenerateOptions)
    assert (generate.samples, generate.seed, generate.temperature, generate.out) == (3, 2, 0.9, rdir / "generate")
    assert generate.student_model == "fly-r1" and generate.student_base_urls == ["http://127.0.0.1:8123/v1"]

    export = fly.options_of(fly.export_args(2, rdir, dry_run=True))
    assert isinstance(export, ExportOptions) and export.val_share == 0 and len(export.sources) == 2

    train = fly.options_of(fly.train_args(rdir))
    assert isinstance(train, TrainOptions)
    assert (train.max_steps, train.rank, train.out, train.base) == (2, 8, rdir / "adapter", "/models/base")

    evaluate = fly.options_of(fly.eval_args(2, rdir, best))
    assert isinstance(evaluate, EvalOptions)
    assert [m.name for m in evaluate.models] == ["fly-r1", "fly-r2"] and evaluate.out == (rdir / "eval").resolve()


def test_a_bad_extra_option_is_a_usage_error_naming_the_step(tmp_path: Path) -> None:
    fly = wheel(tmp_path, tmp_path / "fly", train_args=["--no-such-option"])
    with pytest.raises(UsageError, match="nightowl train: No such option: --no-such-option"):
        fly.options_of(fly.train_args(tmp_path / "fly" / "round-1"))
    with pytest.raises(UsageError, match="--gradient-checkpointing must be auto, on or off"):
        sometimes = wheel(tmp_path, tmp_path / "fly", train_args=["--gradient-checkpointing", "sometimes"])
        sometimes.options_of(sometimes.train_args(tmp_path))


def test_a_failed_step_says_its_exit_status_and_reason(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("loading\nerror: the dataset holds no rows\n")
    assert str(failed("train", log, UsageError("the dataset holds no rows"))) == (
        f"train failed (exit 2): error: the dataset holds no rows; see {log}, then re-run")
    assert str(failed("train", log, StageFailed("killed", exit_code=137))).startswith(
        "train failed (exit 137): error: the dataset holds no rows;")
    assert "failed (exit 70): internal error: RuntimeError: boom" in str(failed("eval", log, RuntimeError("boom")))


def test_the_flywheels_config_file_reaches_every_step(tmp_path: Path) -> None:
    repo = tmp_path / "calc"
    subprocess.run([ROOT / "examples" / "make_example_repo.sh", repo], check=True, capture_output=True)
    config = tmp_path / "team.toml"
    config.write_text("[generate]\ntemperature = 0.3\n[export]\nmin_recall = 0.25\n[train]\nrank = 4\n"
                      "[eval]\nseed = 7\n")
    fly = wheel(repo, tmp_path / "fly", config=config)
    rdir, best = tmp_path / "fly" / "round-1", Best(model="base")
    assert fly.options_of(fly.generate_args(1, rdir, best)).temperature == 0.3
    assert fly.options_of(fly.export_args(1, rdir, dry_run=True)).min_recall == 0.25
    assert fly.options_of(fly.train_args(rdir)).rank == 4
    assert "--config" in map(str, fly.eval_args(1, rdir, best))
    assert fly.options_of(fly.eval_args(1, rdir, best)).seed == 7
