"""The stage runner: a function in a real child process, its typed result back through a file, its error class and
message raised in the parent, and no process left behind when the parent is interrupted or killed -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.errors import EXIT_BUG, UsageError
from orchestrator.pipelines.generate_run import GenerateResult, NoSamples
from orchestrator.pipelines.stage_process import StageFailed, alive, exit_code_of, run_stage

ROOT = Path(__file__).resolve().parents[3]


class Numbers(BaseModel):
    values: list[int]
    pid_file: Path | None = None


class Total(BaseModel):
    total: int
    pid: int


def add_up(options: Numbers) -> Total:
    print("adding up", options.values)
    return Total(total=sum(options.values), pid=os.getpid())


def refuse(options: Numbers) -> Total:
    raise UsageError(f"--values {options.values} is not allowed")


def crash(options: Numbers) -> Total:
    raise RuntimeError("a bug in the stage")


def produce_nothing(options: Numbers) -> GenerateResult:
    error = NoSamples("generate finished with 0 samples in x: t1_exhausted")
    error.result = GenerateResult(complete=True, stopped=None, stages={"done": 0}, sampling={},
                                  samples_file=Path("x/samples.jsonl"), events=Path("x/events.jsonl"))
    raise error


def exit_without_result(options: Numbers) -> Total:
    os._exit(9)


def sleep_forever(options: Numbers) -> Total:
    """Starts a grandchild too (a stage's agents and sandboxes), then writes both pids and waits."""
    grandchild = subprocess.Popen(["sleep", "600"])
    assert options.pid_file is not None
    options.pid_file.write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(600)
    raise AssertionError("not reached")


def test_a_stage_returns_its_typed_result_and_logs_its_output(tmp_path: Path) -> None:
    log = tmp_path / "add.log"
    result = run_stage(add_up, Numbers(values=[1, 2, 3]), Total, log)
    assert isinstance(result, Total) and result.total == 6
    assert result.pid != os.getpid()  # it ran in another process
    assert "adding up [1, 2, 3]" in log.read_text()


def ranked(options: Numbers) -> Total | None:
    """A distributed stage: every rank runs it, rank 0 reports."""
    rank = int(os.environ["RANK"])
    return Total(total=sum(options.values) + 100 * int(os.environ["WORLD_SIZE"]), pid=os.getpid()) if rank == 0 \
        else None


def test_under_a_launcher_rank_0_reports(tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run_stage(ranked, Numbers(values=[1, 2]), Total, tmp_path / "ranked.log", launcher=torchrun)
    assert result.total == 203


def test_the_stages_error_class_and_message_reach_the_parent(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--values \[4\] is not allowed$") as refused:
        run_stage(refuse, Numbers(values=[4]), Total, tmp_path / "refuse.log")
    assert exit_code_of(refused.value) == 2
    assert "error: --values [4] is not allowed" in (tmp_path / "refuse.log").read_text()

    with pytest.raises(RuntimeError, match="^a bug in the stage$") as bug:
        run_stage(crash, Numbers(values=[]), Total, tmp_path / "crash.log")
    assert exit_code_of(bug.value) == EXIT_BUG
    assert "Traceback" in (tmp_path / "crash.log").read_text()

    # an error may carry the partial result: the flywheel keeps a generation that added nothing
    with pytest.raises(NoSamples, match="t1_exhausted") as nothing:
        run_stage(produce_nothing, Numbers(values=[]), GenerateResult, tmp_path / "nothing.log")
    assert exit_code_of(nothing.value) == 1
    assert isinstance(nothing.value.result, GenerateResult) and nothing.value.result.stages == {"done": 0}

    with pytest.raises(StageFailed, match="exit status 9 without a result") as died:
        run_stage(exit_without_result, Numbers(values=[]), Total, tmp_path / "died.log")
    assert exit_code_of(died.value) == 9


def start_parent(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """A parent process that runs `sleep_forever` through the runner; returns it with the child's and the
    grandchild's pids once they run."""
    pid_file = tmp_path / "pids"
    code = ("import sys; from pathlib import Path; "
            "from orchestrator.pipelines.stage_process import run_stage; "
            "from tests.orchestrator.pipelines.test_stage_process import Numbers, Total, sleep_forever; "
            f"run_stage(sleep_forever, Numbers(values=[], pid_file=Path({str(pid_file)!r})), Total, "
            f"Path({str(tmp_path / 'sleep.log')!r}))")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and len(pid_file.read_text().split()) == 2) and time.monotonic() < deadline:
        assert parent.poll() is None, parent.communicate()[1].decode()[-2000:]
        time.sleep(0.1)
    child, grandchild = map(int, pid_file.read_text().split())
    assert alive(child) and alive(grandchild)
    return parent, child, grandchild


def gone_soon(*pids: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(pid) for pid in pids)


def test_killing_the_parent_kills_the_stage_and_its_children(tmp_path: Path) -> None:
    parent, child, grandchild = start_parent(tmp_path)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert gone_soon(child, grandchild)


def test_an_interrupted_parent_stops_the_stage_process_group(tmp_path: Path) -> None:
    parent, child, grandchild = start_parent(tmp_path)
    os.kill(parent.pid, signal.SIGINT)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode != 0 and b"KeyboardInterrupt" in stderr
    assert gone_soon(child, grandchild, within_s=2.0)  # already gone when the parent returned
