"""Crash windows of the result protocol, reproduced by editing the store as a killed shift leaves it."""
import sqlite3

from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from orchestrator.shift.store import SCHEMA_VERSION, Store
from tests.helpers import git
from tests.orchestrator.helpers import SANDBOX, agent_reply, make_repo, nightowl_branches, shift_inputs, write_tasks


def run(repo, out, tasks, url):
    opts = ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[url], workers=2, sandbox=SANDBOX,
                        heartbeat_s=0.2)
    return Shift(opts, sources=[file_source(tasks)]).run()


def crash_after_submit(out, task_id):
    """The state after `kill -9` between the attempt's end and the store recording it."""
    db = sqlite3.connect(out / "shift.sqlite")
    db.execute("DELETE FROM results WHERE task_id=?", (task_id,))
    db.execute("UPDATE attempts SET state='running', exit_status=NULL WHERE task_id=?", (task_id,))
    db.execute("UPDATE tasks SET state='running' WHERE id=?", (task_id,))
    db.commit()
    db.close()


def test_dead_attempt_with_branch_is_adopted_not_rerun(tmp_path):
    repo, tasks, out = shift_inputs(tmp_path, 3)
    with ScriptedServer(agent_reply) as server:
        assert run(repo, out, tasks, server.base_url).complete
        sha = git(repo, "rev-parse", "nightowl/t-000")
        crash_after_submit(out, "t-000")        # branch made, result not recorded
        git(repo, "update-ref", "-d", "refs/heads/nightowl/t-001")
        crash_after_submit(out, "t-001")        # trajectory says submitted, branch not made yet
        n_requests = len(server.chat_requests())
        assert run(repo, out, tasks, server.base_url).complete
        assert len(server.chat_requests()) == n_requests  # nothing was run again
    assert git(repo, "rev-parse", "nightowl/t-000") == sha
    assert sorted(nightowl_branches(repo)) == ["nightowl/t-000", "nightowl/t-001", "nightowl/t-002"]
    db = sqlite3.connect(out / "shift.sqlite")
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 3


def test_foreign_branch_is_never_overwritten(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "nightowl/t-000")
    sha = git(repo, "rev-parse", "nightowl/t-000")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    with ScriptedServer(agent_reply) as server:
        assert run(repo, tmp_path / "out", tasks, server.base_url).complete
    assert git(repo, "rev-parse", "nightowl/t-000") == sha
    row = sqlite3.connect(tmp_path / "out" / "shift.sqlite").execute("SELECT branch, message FROM results").fetchone()
    assert row[0] is None and "already exists" in row[1]


def test_schema_is_versioned_and_a_newer_one_refused(tmp_path):
    store = Store(tmp_path)
    assert store.db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    store.db.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION + 1,))
    store.close()
    import pytest

    from orchestrator.shift.store import StoreError
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path)


def test_a_resume_must_name_the_same_repo(tmp_path):
    import pytest

    from orchestrator.shift.store import StoreError
    repo, other = make_repo(tmp_path / "repo"), make_repo(tmp_path / "other")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    with ScriptedServer(agent_reply) as server:
        run(repo, tmp_path / "out", tasks, server.base_url)
        with pytest.raises(StoreError, match="another --out"):
            run(other, tmp_path / "out", tasks, server.base_url)


def test_stale_ref_lock_from_a_killed_update_ref_is_cleared(tmp_path):
    repo = make_repo(tmp_path / "repo")
    lock = repo / ".git" / "refs" / "heads" / "nightowl" / "t-000.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    with ScriptedServer(agent_reply) as server:
        assert run(repo, tmp_path / "out", tasks, server.base_url).complete
    assert nightowl_branches(repo) == ["nightowl/t-000"] and not lock.exists()
