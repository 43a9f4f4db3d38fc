"""One pipeline stage function in a child process, so that its memory (a model, CUDA) goes back when it ends.

The parent writes a request (the function, its options model and the options as JSON) and starts
`python -m orchestrator.pipelines.stage_process REQUEST` (or that under a launcher such as torchrun) in its own
process group, with stdout and stderr going to a log file. The child writes the typed result, or the error's class
and message, to a JSON file beside the request; the parent reads that file (never the child's output) and returns
the result or raises the same error class with the same message. An interrupted parent stops the child's whole
process group; a parent killed outright takes the group with it (every stage process watches the parent's pid).
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from agent.trajectory import write_text_atomic
from orchestrator.errors import EXIT_BUG, NightowlError

ResultT = TypeVar("ResultT", bound=BaseModel)
PARENT_ENV = "NIGHTOWL_STAGE_PARENT"
STOP_GRACE_S = 20.0
"""How long an interrupted stage gets to stop by itself (a shift finishes its bookkeeping) before SIGKILL."""


class StageRequest(BaseModel):
    function: str
    """`module:name` of the stage function; it takes the options model and returns a pydantic model (or None
    on the ranks of a distributed run that do not report)."""
    options_type: str
    options: dict[str, Any]
    result_path: Path


class StageError(BaseModel):
    type: str
    """`module:qualname` of the exception class."""
    message: str
    exit_code: int
    result: dict[str, Any] | None = None
    """A partial result the error carries (its `result` attribute), e.g. a generation that produced nothing."""


class StageOutcome(BaseModel):
    result: dict[str, Any] | None = None
    error: StageError | None = None


class StageFailed(NightowlError):
    """The stage process ended without saying why (killed, crashed, or an error class the parent cannot rebuild)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def qualified_name(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def resolve(name: str) -> Any:
    module, _, attribute = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def exit_code_of(error: BaseException) -> int:
    """The exit status `nightowl` gives this error (the CLI's rule): its own errors say theirs (2 by default),
    anything else is a bug."""
    if isinstance(error, NightowlError):
        return int(getattr(error, "exit_code", 2))
    return EXIT_BUG


def run_stage(function: Any, options: BaseModel, result_type: type[ResultT], log: Path,
              env: dict[str, str] | None = None, launcher: list[str] | None = None) -> ResultT:
    """Runs `function(options)` in a child process and returns its result as `result_type`; the child's error is
    raised here with its class and message. `launcher`: a command that runs `python` for us (e.g. torchrun)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    request_path = log.with_suffix(".request.json")
    result_path = log.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    request = StageRequest(function=qualified_name(function), options_type=qualified_name(type(options)),
                           options=options.model_dump(mode="json"), result_path=result_path)
    write_text_atomic(request_path, request.model_dump_json(indent=1) + "\n")
    argv = [*(launcher or [sys.executable]), "-m", __name__, str(request_path)]
    child_env = {**os.environ, **(env or {}), PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=child_env)
    try:
        code = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    outcome = StageOutcome.model_validate_json(result_path.read_text()) if result_path.is_file() else None
    if outcome is None or (outcome.result is None and outcome.error is None):
        raise StageFailed(f"the stage process ended with exit status {code} without a result (see {log})",
                          exit_code=code or EXIT_BUG)
    if outcome.error is not None:
        raise rebuild(outcome.error, result_type)
    return result_type.model_validate(outcome.result)


def rebuild(error: StageError, result_type: type[BaseModel]) -> Exception:
    """The child's exception, as the same class with the same message (StageFailed when that cannot be built)."""
    try:
        cls = resolve(error.type)
        rebuilt = cls(error.message) if isinstance(cls, type) and issubclass(cls, Exception) else None
    except Exception:
        rebuilt = None
    if rebuilt is None or exit_code_of(rebuilt) != error.exit_code:
        rebuilt = StageFailed(f"{error.type.rpartition(':')[2]}: {error.message}", exit_code=error.exit_code)
    if error.result is not None:
        rebuilt.result = result_type.model_validate(error.result)  # type: ignore[attr-defined]
    return rebuilt


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the stage's process group (a shift stops gracefully), SIGKILL to what is left after the grace."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren left in the group
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """False once `pid` has exited, zombie included (a killed parent nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def die_with_parent(parent: int, interval_s: float = 0.2) -> None:
    """Kills this process group once `parent` is gone: a flywheel killed with -9 leaves no training behind."""
    def watch() -> None:
        while alive(parent):
            time.sleep(interval_s)
        os.killpg(0, signal.SIGKILL)
    threading.Thread(target=watch, name="stage-parent-watch", daemon=True).start()


def reports(outcome: StageOutcome) -> bool:
    """Rank 0 (or a run without ranks) writes the outcome; an error is written by whichever rank has one first."""
    return int(os.environ.get("RANK", "0")) == 0 or (outcome.error is not None and "RANK" in os.environ)


def main(request_path: Path) -> int:
    if os.environ.get(PARENT_ENV):
        die_with_parent(int(os.environ[PARENT_ENV]))
    request = StageRequest.model_validate_json(request_path.read_text())
    try:
        options = resolve(request.options_type).model_validate(request.options)
        result = resolve(request.function)(options)
        outcome = StageOutcome(result=result.model_dump(mode="json") if result is not None else None)
        code = 0
    except Exception as e:
        code = exit_code_of(e)
        carried = getattr(e, "result", None)
        outcome = StageOutcome(error=StageError(type=qualified_name(type(e)), message=str(e), exit_code=code,
                                                result=carried.model_dump(mode="json")
                                                if isinstance(carried, BaseModel) else None))
        if isinstance(e, NightowlError):
            print(f"error: {e}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
            print(f"internal error (a bug in nightowl, not your input): {type(e).__name__}: {e}", file=sys.stderr,
                  flush=True)
    if (outcome.result is not None or outcome.error is not None) and reports(outcome) \
            and not (outcome.error is not None and request.result_path.is_file()):
        write_text_atomic(request.result_path, outcome.model_dump_json() + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
