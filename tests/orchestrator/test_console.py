"""Output channels: `plain` writes text byte for byte, and the log goes to stderr and to one file per command."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import console as output


@pytest.fixture
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NIGHTOWL_CRASH_DIR", str(tmp_path / "logs"))
    yield tmp_path / "logs"
    root = logging.getLogger()
    for handler in output._installed:
        root.removeHandler(handler)
        handler.close()
    output._installed.clear()
    for name in output.NIGHTOWL_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_plain_writes_text_exactly_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    text = '{"best": "[bold]x[/bold] :smile: ' + "y" * 300 + '"}\n  indented  \n'
    output.plain(text)
    assert capsys.readouterr().out == text + "\n"


def test_a_warning_goes_to_stderr_bare_and_to_the_commands_log_file(log_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = output.configure_logging("shift")
    assert path.parent == log_dir and path.name.startswith("shift-") and not log_dir.exists()
    logging.getLogger("sandbox.cgroups").debug("not shown without --verbose")
    logging.getLogger("sandbox.cgroups").warning("no cgroup for this run")
    assert capsys.readouterr().err == "no cgroup for this run\n"
    text = path.read_text()
    assert "WARNING sandbox.cgroups: no cgroup for this run" in text and "not shown" not in text


def test_verbose_shows_nightowls_debug_records_but_not_other_libraries(log_dir: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = output.configure_logging("run", verbose=True)
    logging.getLogger("agent.loop").debug("step 3")
    logging.getLogger("httpx").debug("a library's chatter")
    assert capsys.readouterr().err == "DEBUG agent.loop: step 3\n"
    assert "step 3" in path.read_text()


def test_configuring_again_replaces_the_previous_handlers(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output.configure_logging("eval")
    output.configure_logging("eval", verbose=True)
    logging.getLogger("orchestrator.x").warning("once")
    assert capsys.readouterr().err == "WARNING orchestrator.x: once\n"
