"""`nightowl flywheel`: rounds of generate -> export -> release -> train -> restore -> load -> eval -> promote only
if better.

Each step is one stage function (generate, export, train, eval: each resumes itself when re-run with the same
directory) run in a child process by orchestrator/pipelines/stage_process.py, with the options the step's
`nightowl` command line stands for (the same lines `--dry-run` prints), or for release/restore an action on the
student server (orchestrator/serving/student.py: vLLM sleeps, or
the server nightowl started stops, so that `train` has the accelerator), and leaves DIR/round-N/<step>.json with
its time when it finished; a re-run after any kill skips finished steps and repeats the interrupted one, after
bringing the server into the state that step needs. DIR/best.json names the model to beat (the base until a round
is promoted) and DIR/best links to its adapter directory; DIR/rounds.jsonl has one line per finished round;
DIR/round-N/report.md says what happened.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from copy import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.trajectory import write_text_atomic
from orchestrator.errors import NightowlError, NothingProduced, UsageError
from orchestrator.layout import (
    BEST,
    ROUNDS,
    best_json,
    read_best_file,
    read_round_step,
    read_rounds,
    round_step_json,
    rounds_jsonl,
)
from orchestrator.pipelines.evaluate import EvalOptions, EvalResult, run_eval
from orchestrator.pipelines.generate_run import GenerateResult, run_generate
from orchestrator.pipelines.stage_process import StageFailed, exit_code_of, run_stage
from orchestrator.serving.student import StudentServer, train_environment
from training.dataset.export import ExportReport, export
from training.finetune.train import TrainReport, train

STEPS = ("generate", "export", "release", "train", "restore", "load", "eval", "decide")
SERVER_STEPS = ("release", "restore")
"""Steps older flywheel directories do not have: a finished round is not given them afterwards."""


class FlywheelOptions(BaseModel):
    repo: Path
    out: Path
    rounds: int = Field(gt=0)
    base: str
    """The base model: a directory or hub id (trained on, and served)."""
    base_name: str
    """The base model's served name (what `model=` selects without an adapter)."""
    student_url: str
    """The vLLM server with LoRA enabled that serves the base and every round's adapter."""
    teacher_url: str
    teacher_model: str
    tasks: Path
    """The eval tasks (e.g. from `bench-history`)."""
    samples: int = Field(default=20, gt=0)
    commits: str | None = None
    """Snapshots generate samples from (default: the newest commit before a recorded benchmark cut-off)."""
    student_as_teacher: bool = False
    metric: str = copy(EvalOptions.model_fields["metric"])
    workers: int = copy(EvalOptions.model_fields["workers"])
    max_steps: int = copy(EvalOptions.model_fields["max_steps"])
    max_tokens: int = copy(EvalOptions.model_fields["max_tokens"])
    sandbox: str = copy(EvalOptions.model_fields["sandbox"])
    tool_choice: str = copy(EvalOptions.model_fields["tool_choice"])
    train_args: list[str] = Field(default_factory=list)
    """Extra `nightowl train` options (e.g. --epochs 3 --lr 1e-3)."""
    generate_args: list[str] = Field(default_factory=list)
    until: str | None = None
    deadline: float | None = None
    config: Path | None = None
    """The flywheel's --config file: every step reads it too."""
    train_devices: list[int] | None = None
    """GPU indices `train` runs on (CUDA_VISIBLE_DEVICES; several: one torchrun process each, DDP)."""


OptionsOf = Callable[[list[Any]], BaseModel]
"""Reads a step's `nightowl` command line (["train", "--base", ...]) into the options model its stage takes."""
STAGE_FUNCTIONS: dict[str, tuple[Callable[..., Any], type[BaseModel]]] = {
    "generate": (run_generate, GenerateResult), "export": (export, ExportReport), "train": (train, TrainReport),
    "eval": (run_eval, EvalResult)}


class Best(BaseModel):
    model: str
    """The served name: the base's, or a promoted round's adapter name."""
    adapter: str | None = None
    round: int = 0


def read_best(out: Path, base_name: str) -> Best:
    data = read_best_file(out / BEST)
    return Best.model_validate(data) if data else Best(model=base_name)


def point_best_link(out: Path, adapter: Path) -> None:
    """DIR/best -> the promoted adapter, replaced atomically, so `nightowl run/shift --model DIR/best` serves it."""
    temporary = out / ".best.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(os.path.relpath(adapter, out), target_is_directory=True)
    os.replace(temporary, out / "best")


def adapter_name(out: Path, n: int) -> str:
    """A new name every round (and every flywheel directory): a reused name can serve stale cache entries."""
    return f"{out.name}-r{n}"


class Flywheel:
    def __init__(self, opt: FlywheelOptions, options_of: OptionsOf, log: Callable[[str], None] = print,
                 load: Callable[[str, str, Path], None] | None = None, show: Callable[[str], None] | None = None,
                 server: StudentServer | None = None):
        from orchestrator.serving.vllm_server import load_adapter
        self.opt, self.options_of, self.log, self.show = opt, options_of, log, show or log
        self.load = load or (lambda url, name, path: load_adapter(url, name, path))
        self.out = opt.out
        self.server = server or StudentServer(opt.student_url)

    def run(self) -> bool:
        """True when every round finished; False when stopped by the deadline (re-run to resume)."""
        self.out.mkdir(parents=True, exist_ok=True)
        best = read_best(self.out, self.opt.base_name)
        if self.server.own and self.server.mode != "restart":
            # started now (it stays up, or sleeps around train): a server that cannot start fails before hours of
            # generation; `restart` starts it when a step first needs it
            self.serving(next(n for n in range(1, self.opt.rounds + 1)
                              if n == self.opt.rounds or not (self.out / f"round-{n}" / "decide.json").is_file()))
        elif best.adapter and not self.server.own:
            self.reload(best)  # the user's server may have been restarted since
        for n in range(1, self.opt.rounds + 1):
            if not self.round(n):
                return False
        return True

    def reload(self, best: Best) -> None:
        """After a restart the server may have lost its runtime adapters: load the best again (same name)."""
        self.reload_adapter(best.model, Path(best.adapter or ""))

    def reload_adapter(self, name: str, path: Path) -> None:
        try:
            self.load(self.opt.student_url, name, path)
        except Exception as e:  # already loaded answers an error too; the eval finds out if it is really missing
            self.log(f"reloading {name}: {e}")

    def serving(self, n: int) -> bool:
        """The student server is up for a step that uses it; after a (re)start or wake-up, the best adapter and
        this round's candidate (once loaded) are loaded again. True when that happened."""
        if not self.server.ensure_serving():
            return False
        best = read_best(self.out, self.opt.base_name)
        if best.adapter:
            self.reload(best)
        load = read_round_step(self.out / f"round-{n}" / "load.json")
        if load.get("name") and load["name"] != best.model:
            self.reload_adapter(load["name"], Path(load["adapter"]))
        return True

    def past_deadline(self) -> bool:
        return self.opt.deadline is not None and time.time() >= self.opt.deadline

    def round(self, n: int) -> bool:
        rdir = self.out / f"round-{n}"
        rdir.mkdir(exist_ok=True)
        decided = (rdir / "decide.json").is_file()
        best = read_best(self.out, self.opt.base_name) if not decided else None
        for step in STEPS:
            if (rdir / f"{step}.json").is_file() or (decided and step in SERVER_STEPS):
                continue
            if self.past_deadline():
                self.log(f"round {n}: deadline reached before {step}; re-run the same command to resume")
                return False
            started = time.monotonic()
            self.log(f"round {n}: {step}")
            result = getattr(self, f"step_{step}")(n, rdir, best)
            if result is None:
                return False
            result["seconds"] = round(time.monotonic() - started, 1)
            write_text_atomic(rdir / f"{step}.json", round_step_json(result))
        self.finish_round(n, rdir)
        return True

    def stage(self, rdir: Path, step: str, args: list[Any], env: dict[str, str] | None = None,
              launcher: list[str] | None = None, nothing_is_fine: bool = False) -> BaseModel | None:
        """Runs the stage `args` stands for in a child process; its output goes to round-N/<step>.log.
        `nothing_is_fine`: a stage that ran to its end and produced nothing is logged, not fatal (its result is
        returned)."""
        log = rdir / f"{step}.log"
        function, result_type = STAGE_FUNCTIONS[str(args[0])]
        try:
            return run_stage(function, self.options_of(args), result_type, log, env=env, launcher=launcher)
        except NothingProduced as e:
            if not nothing_is_fine or getattr(e, "result", None) is None:
                raise failed(step, log, e) from None
            self.log(f"{rdir.name}: {step} produced nothing new ({last_error_line(log)}); "
                     "training goes on with the earlier rounds' data")
            return e.result  # type: ignore[attr-defined, no-any-return]
        except Exception as e:
            raise failed(step, log, e) from None

    def until_args(self) -> list[str]:
        return ["--until", self.opt.until] if self.opt.until else []

    def config_args(self) -> list[Any]:
        return ["--config", self.opt.config] if self.opt.config else []

    def step_generate(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any] | None:
        assert best is not None
        if best.adapter:
            self.serving(n)
        # A round after the first that adds no sample still has the earlier rounds' data to train on; only a
        # flywheel with no data at all stops here.
        earlier = [self.out / f"round-{k}" / "generate" / "samples.jsonl" for k in range(1, n)]
        has_data = any(p.is_file() and p.stat().st_size for p in earlier)
        result = self.stage(rdir, "generate", self.generate_args(n, rdir, best), nothing_is_fine=has_data)
        assert result is None or isinstance(result, GenerateResult)
        return result.printed() if result is not None and result.complete else None

    def generate_args(self, n: int, rdir: Path, best: Best) -> list[Any]:
        teacher_url, teacher = (self.opt.student_url, best.model) if self.opt.student_as_teacher and best.adapter \
            else (self.opt.teacher_url, self.opt.teacher_model)
        # Until a round is promoted there is no student worth imitating: the teacher does T2 as well.
        student = ["--student-base-url", self.opt.student_url, "--student-model", best.model] if best.adapter else []
        args = ["generate", self.opt.repo, "--samples", self.opt.samples, "--base-url", teacher_url, "--model", teacher,
                *student, "--out", rdir / "generate",
                "--seed", n, "--workers", self.opt.workers, "--max-steps", self.opt.max_steps, "--max-tokens",
                self.opt.max_tokens, "--sandbox", self.opt.sandbox, "--tool-choice", self.opt.tool_choice, "--json",
                *(["--commits", self.opt.commits] if self.opt.commits else []), *self.until_args(),
                *self.config_args(), *self.opt.generate_args]
        return args

    def step_export(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any] | None:
        """Every round's data so far (deterministic, quick): a partial dataset from a killed export is redone."""
        shutil.rmtree(rdir / "dataset", ignore_errors=True)
        report = self.stage(rdir, "export", self.export_args(n, rdir))
        assert isinstance(report, ExportReport)
        return {**report.model_dump(mode="json"), "output": "\n".join(report.summary())}

    def export_args(self, n: int, rdir: Path, dry_run: bool = False) -> list[Any]:
        sources = [self.out / f"round-{k}" / "generate" for k in range(1, n + 1)]
        return ["export", *[s for s in sources if dry_run or (s / "samples.jsonl").is_file()], "--out",
                rdir / "dataset", "--val-share", "0", *self.config_args()]

    def step_release(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any]:
        return {**self.server.release(), "train_devices": self.opt.train_devices}

    def train_args(self, rdir: Path) -> list[Any]:
        return ["train", "--base", self.opt.base, "--data", rdir / "dataset", "--out", rdir / "adapter",
                *self.config_args(), *self.opt.train_args]

    def train_launch(self) -> tuple[dict[str, str], list[str] | None]:
        """The environment (the training GPUs) and, for several GPUs, torchrun with one process per GPU."""
        devices = self.opt.train_devices
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(len(devices))] if devices and len(devices) > 1 else None
        return train_environment(devices), launcher

    def step_train(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any] | None:
        self.server.release()  # idempotent: after a resume the server may be back (or never went away)
        env, launcher = self.train_launch()
        report = self.stage(rdir, "train", self.train_args(rdir), env=env, launcher=launcher)
        assert isinstance(report, TrainReport)
        return {"output": report.summary(rdir / "adapter")}

    def step_restore(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any]:
        started = self.serving(n)
        action = ("nothing to restore" if self.server.mode == "none" and not started
                  else "woken" if self.server.mode == "sleep" and started and not self.server.own
                  else "started" if started else "already serving")
        return {"mode": self.server.mode, "action": action}

    def step_load(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any]:
        self.serving(n)
        name = adapter_name(self.out, n)
        self.load(self.opt.student_url, name, rdir / "adapter")
        return {"name": name, "adapter": str((rdir / "adapter").resolve())}

    def step_eval(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any] | None:
        assert best is not None
        if not self.serving(n) and best.adapter:
            self.reload(best)
        result = self.stage(rdir, "eval", self.eval_args(n, rdir, best))
        assert isinstance(result, EvalResult)
        return result.printed() if result.complete else None

    def eval_args(self, n: int, rdir: Path, best: Best) -> list[Any]:
        name = adapter_name(self.out, n)
        return [
            "eval", "--tasks", self.opt.tasks, "--repo", self.opt.repo, "--model", best.model, "--model", name,
            "--base-url", self.opt.student_url, "--out", rdir / "eval", "--metric", self.opt.metric,
            "--workers", self.opt.workers, "--max-steps", self.opt.max_steps, "--max-tokens", self.opt.max_tokens,
            "--sandbox", self.opt.sandbox, "--tool-choice", self.opt.tool_choice, "--json", *self.until_args(),
            *self.config_args()]

    def dry_run(self, n: int = 1) -> list[str]:
        """The steps of round `n` in order, as they would run (nothing started, nothing written)."""
        import shlex

        rdir = self.out / f"round-{n}"
        best = read_best(self.out, self.opt.base_name)
        env, launcher = self.train_launch()
        train_line = " ".join([*(f"{k}={v}" for k, v in env.items()),
                               shlex.join([*(launcher or ["nightowl"]),
                                           *(["-m", "orchestrator.cli.main"] if launcher else []),
                                           *map(str, self.train_args(rdir))])])
        name = adapter_name(self.out, n)
        lines = [
            ("generate", "nightowl " + shlex.join(map(str, self.generate_args(n, rdir, best)[0:]))),
            ("export", "nightowl " + shlex.join(map(str, self.export_args(n, rdir, dry_run=True)))),
            ("release", self.server.release_text()),
            ("train", train_line),
            ("restore", self.server.restore_text()),
            ("load", f"POST {self.opt.student_url}/load_lora_adapter {{lora_name: {name}, lora_path: "
                     f"{rdir / 'adapter'}}}"),
            ("eval", "nightowl " + shlex.join(map(str, self.eval_args(n, rdir, best)))),
            ("decide", f"promote {name} if its {self.opt.metric} is better than {best.model}'s (95% CI above 0); "
                       f"write {self.out / 'best.json'}, link {self.out / 'best'}, append {self.out / 'rounds.jsonl'}"),
        ]
        assert [step for step, _ in lines] == list(STEPS)
        return [f"{i}. {step}: {text}" for i, (step, text) in enumerate(lines, 1)]

    def step_decide(self, n: int, rdir: Path, best: Best | None) -> dict[str, Any]:
        assert best is not None
        comparison = read_round_step(rdir / "eval.json")["comparison"]
        promoted = comparison["verdict"] == "better"
        if promoted:
            load = read_round_step(rdir / "load.json")
            promoted_best = Best(model=load["name"], adapter=load["adapter"], round=n)
            write_text_atomic(self.out / BEST, best_json(promoted_best.model_dump()))
            point_best_link(self.out, Path(load["adapter"]))
        return {"against": best.model_dump(), "comparison": comparison, "promoted": promoted,
                "best": read_best(self.out, self.opt.base_name).model_dump()}

    def finish_round(self, n: int, rdir: Path) -> None:
        steps = {s: read_round_step(rdir / f"{s}.json") for s in STEPS}
        decision, models = steps["decide"], steps["eval"]["models"]
        line = {"round": n, "candidate": steps["load"]["name"], "against": decision["against"]["model"],
                "promoted": decision["promoted"], "verdict": decision["comparison"]["verdict"],
                "metric": decision["comparison"]["metric"], "diff": decision["comparison"]["diff"],
                "ci": decision["comparison"]["ci"], "best": decision["best"]["model"],
                "release": steps["release"].get("mode"),
                "seconds": {s: steps[s].get("seconds") for s in STEPS if s not in SERVER_STEPS or steps[s]}}
        write_text_atomic(rdir / "report.md", report(n, line, models, steps))
        self.show(before_after(n, line, models))
        rounds = [r for r in read_rounds(self.out / ROUNDS) if r["round"] != n] + [line]
        write_text_atomic(self.out / ROUNDS, rounds_jsonl(rounds))


def before_after(n: int, line: dict[str, Any], models: list[dict[str, Any]]) -> str:
    """The round's eval, before (the model to beat) and after (the candidate), for the terminal."""
    from training.evaluation.metrics import metrics_table

    diff = "-" if line["diff"] is None else f"{line['diff']:+.2f}"
    verdict = f"{line['metric']} {diff}, 95% CI {line['ci']}: {line['verdict']}, " + \
        ("promoted" if line["promoted"] else "not promoted")
    return "\n".join([f"round {n}: before = {line['against']}, after = {line['candidate']}, on the same tasks",
                      *metrics_table(models), verdict])


def report(n: int, line: dict[str, Any], models: list[dict[str, Any]], steps: dict[str, dict[str, Any]]) -> str:
    from training.evaluation.metrics import fmt, metrics_table

    diff = "-" if line["diff"] is None else f"{line['diff']:+.3f}"
    out = [f"# Flywheel round {n}", "",
           f"Candidate `{line['candidate']}` against `{line['against']}` on {line['metric']}: "
           f"difference {diff}, 95% CI {line['ci']}, verdict **{line['verdict']}**; "
           + ("promoted." if line["promoted"] else "not promoted."), "", *metrics_table(models)]
    gen, data = steps["generate"], steps["export"]
    out += ["", f"Generate: {json.dumps({k: v for k, v in gen.items() if k in ('stages', 'recall_mean')})}. "
            f"Export: {data.get('output', '')}", "",
            "| step | seconds |", "|---|---|"] + [f"| {s} | {fmt(v, 1)} |" for s, v in line["seconds"].items()]
    return "\n".join(out) + "\n"


def failed(step: str, log: Path, error: Exception) -> UsageError:
    """The flywheel's one line for a failed step: the stage's exit status and its own reason."""
    if isinstance(error, StageFailed):
        reason = last_error_line(log)
    elif isinstance(error, NightowlError):
        reason = f"error: {error}"
    else:
        reason = f"internal error: {type(error).__name__}: {error}"
    return UsageError(f"{step} failed (exit {exit_code_of(error)}): {reason[:500]}; see {log}, then re-run")


def last_error_line(log: Path) -> str:
    """The step's own one-line reason (nightowl's `error:` / `internal error` line), else its last line."""
    text = log.read_bytes().decode(errors="replace") if log.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "internal error"))]
    return (said or lines or ["(no output)"])[-1][:500]
