"""bench-history: exact tasks from a repo with known commits, the cut-off, and leaks refused by export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.training.helpers import conversation, make_generate, make_shift, trajectory
from training.dataset.export import ExportOptions, export
from training.evaluation.history import mine_history
from training.evaluation.holdout import HoldoutLeak, holdout_since, last_commit_before, record_holdout
from training.synthesis.demonstrations import from_history
from training.synthesis.recall import changed_lines

ROOT = Path(__file__).resolve().parents[3]
CALC = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


def commit(repo: Path, date: str, message: str, files: dict[str, str], *extra: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", *extra, "-m", message], check=True, env=env)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, **({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {})}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    c: dict[str, str] = {}
    c["init"] = commit(repo, "2024-01-01T10:00:00+00:00", "Calculator with add", {"calc.py": CALC, "test_calc.py": TEST})
    c["sub"] = commit(repo, "2024-02-01T10:00:00+00:00",
                      "Add subtract\n\nUsers asked for a way to take one number from another.\n\nSigned-off-by: Someone <s@example.com>",
                      {"calc.py": CALC + "\n\ndef sub(a, b):\n    return a - b\n",
                       "test_calc.py": TEST + "\n\ndef test_sub():\n    from calc import sub\n    assert sub(3, 1) == 2\n"})
    git(repo, "checkout", "-q", "-b", "side")
    c["side"] = commit(repo, "2024-02-10T10:00:00+00:00", "More tests", {"test_calc.py": TEST + "\n# more\n"})
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch side: more tests for the calculator", "side", date="2024-03-05T10:00:00+00:00")
    c["silent"] = commit(repo, "2024-03-10T10:00:00+00:00", "", {"notes.py": "x = 1\n"}, "--allow-empty-message")
    c["lock"] = commit(repo, "2024-03-15T10:00:00+00:00", "Bump lock", {"package-lock.json": "{}\n"})
    c["huge"] = commit(repo, "2024-03-20T10:00:00+00:00", "Big table",
                       {"table.py": "".join(f"V{i} = {i}\n" for i in range(600))})
    c["div"] = commit(repo, "2024-04-01T10:00:00+00:00", "Divide by zero returns None",
                      {"calc.py": CALC + "\n\ndef sub(a, b):\n    return a - b\n\n\ndef div(a, b):\n"
                                         "    return None if b == 0 else a / b\n"})
    c["late"] = commit(repo, "2024-05-01T10:00:00+00:00", "After the window", {"late.py": "y = 2\n"})
    return repo, c


def test_exact_tasks_reference_patches_and_skips(history) -> None:
    repo, c = history
    since = datetime(2024, 1, 15, tzinfo=timezone.utc)
    report = mine_history(repo, since, datetime(2024, 4, 15, tzinfo=timezone.utc))
    assert [t.id for t in report.tasks] == [f"hist-{c['sub'][:10]}", f"hist-{c['div'][:10]}"]
    assert report.skipped == {"merge": 1, "tests only": 1, "no message": 1, "generated only": 1, "huge": 1}
    sub, div = report.tasks
    assert sub.task == "Add subtract\n\nUsers asked for a way to take one number from another."  # trailers are bookkeeping, not the task
    assert sub.commit == c["init"] and sub.source_commit == c["sub"]
    assert changed_lines(sub.reference_patch) == ["+def sub(a, b):", "+    return a - b"]
    assert "test_calc.py" not in sub.reference_patch
    assert sub.tests is not None and sub.tests.files == ["test_calc.py"]
    assert sub.tests.command == "python -m pytest -q -p no:cacheprovider test_calc.py"
    assert "+def test_sub():" in changed_lines(sub.tests.patch)
    assert div.commit == c["huge"] and div.tests is None  # the huge commit is skipped, yet it is div's start
    assert div.holdout_since == "2024-01-15T00:00:00+00:00" and div.committed_at == "2024-04-01T10:00:00+00:00"


def test_max_and_until(history) -> None:
    repo, c = history
    since = datetime(2024, 1, 15, tzinfo=timezone.utc)
    assert [t.source_commit for t in mine_history(repo, since, max_tasks=1).tasks] == [c["sub"]]
    everything = mine_history(repo, since).tasks
    assert [t.source_commit for t in everything] == [c["sub"], c["div"], c["late"]]


def test_cli_writes_tasks_that_shift_reads_and_records_the_cutoff(history, tmp_path: Path) -> None:
    repo, c = history
    tasks = tmp_path / "bench.jsonl"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "bench-history", str(repo), "--since",
                           "2024-01-15", "--until", "2024-04-15", "--out", str(tasks), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"] == 2
    rows = [json.loads(line) for line in tasks.read_text().splitlines()]
    assert {"id", "task", "commit", "reference_patch"} <= set(rows[0]) and "tests" in rows[0] and "tests" not in rows[1]
    from orchestrator.shift.tasks import load_tasks_file
    assert [s.commit for s in load_tasks_file(tasks)] == [c["init"], c["huge"]]
    assert holdout_since(repo) == datetime(2024, 1, 15, tzinfo=timezone.utc)
    assert last_commit_before(repo, holdout_since(repo)) == c["init"]
    bad = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "bench-history", str(repo), "--since", "2030-01-01",
                          "--out", str(tmp_path / "none.jsonl")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no usable commits" in bad.stderr and "Traceback" not in bad.stderr


def test_demonstrations_from_history_stop_at_the_cutoff(history) -> None:
    repo, _ = history
    before = from_history(repo)
    after = from_history(repo, before=datetime(2024, 3, 1, tzinfo=timezone.utc))
    sub = "Add subtract\n\nUsers asked for a way to take one number from another."
    merge = "Merge branch side: more tests for the calculator"
    assert sub in before and merge in before
    assert sub in after and merge not in after  # merged on 2024-03-05: held out


def test_export_refuses_snapshots_and_demonstrations_after_the_cutoff(history, tmp_path: Path) -> None:
    repo, c = history
    record_holdout(repo, datetime(2024, 1, 15, tzinfo=timezone.utc), tmp_path / "bench.jsonl")

    def traj(base: str) -> dict:
        return {**trajectory(conversation("t"), "r"), "repo": str(repo), "base_commit": base}

    early = make_shift(tmp_path / "early", {"a": [traj(c["init"])]})
    export(ExportOptions(sources=[early], out=tmp_path / "ok", val_share=0.0))  # predates the cut-off: fine
    late = make_shift(tmp_path / "late", {"a": [traj(c["div"])]})
    with pytest.raises(HoldoutLeak, match="post-date the benchmark cut-off"):
        export(ExportOptions(sources=[late], out=tmp_path / "refused", val_share=0.0))
    assert not (tmp_path / "refused").exists()
    export(ExportOptions(sources=[late], out=tmp_path / "told", val_share=0.0, allow_holdout_leak=True))
    assert (tmp_path / "told" / "train.jsonl").is_file()

    generated = make_generate(tmp_path / "gen", [{"id": "s1", "t1": traj(c["init"])}])
    (generated / "demonstrations.json").write_text(json.dumps({"source": "history", "holdout_since": None}))
    with pytest.raises(HoldoutLeak, match="demonstrations were drawn from history"):
        export(ExportOptions(sources=[generated], out=tmp_path / "gen-refused", val_share=0.0))
    (generated / "demonstrations.json").write_text(json.dumps({"source": "history",
                                                                 "holdout_since": "2024-01-15T00:00:00+00:00"}))
    export(ExportOptions(sources=[generated], out=tmp_path / "gen-ok", val_share=0.0))
