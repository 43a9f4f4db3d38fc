"""One configuration: defaults < nightowl.toml < flags, `config show`, and a shift configured only by the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.scripted_server import ScriptedServer
from orchestrator.errors import UsageError
from orchestrator.settings import Settings, load_settings
from orchestrator.shift.engine import ShiftOptions
from tests.orchestrator.helpers import agent_reply, make_repo, nightowl_branches, write_tasks

ROOT = Path(__file__).resolve().parents[2]


def nightowl(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_defaults_come_from_the_models_that_use_them():
    s = Settings()
    assert s.agent.max_steps == AgentConfig().max_steps
    assert s.model.max_retries == SamplingOptions().max_retries == ShiftOptions.model_fields["model_retries"].default
    assert s.agent.max_wall_s == ShiftOptions.model_fields["task_timeout_s"].default


def test_file_then_flags_with_their_sources(tmp_path):
    (tmp_path / "nightowl.toml").write_text(
        '[model]\nname = "coder"\ntemperature = 0.4\nbase_url = "http://h:1/v1"\n'
        '[agent]\nmax_steps = 7\n[sandbox]\nnetwork = true\n[sandbox.limits]\nmemory_mb = 8192\n[shift]\nout = "night"\n'
        '[generate]\nowned_by = "another command"\n')
    loaded = load_settings(tmp_path / "nightowl.toml", flags={"agent.max_steps": (9, "--max-steps")})
    s = loaded.settings
    assert (s.model.name, s.model.temperature, s.model.base_url) == ("coder", 0.4, ["http://h:1/v1"])
    assert s.agent.max_steps == 9 and s.sandbox.limits.memory_mb == 8192
    assert s.sandbox.policy().limits.memory_mb == 8192 and s.sandbox.policy().network
    assert s.shift.out == tmp_path.resolve() / "night"  # relative to the file
    assert s.model_extra == {"generate": {"owned_by": "another command"}}
    src = loaded.sources
    assert src["agent.max_steps"] == "--max-steps" and src["model.temperature"] == str(tmp_path / "nightowl.toml")
    assert src["model.max_tokens"] == "default"


@pytest.mark.parametrize("text,expected", [
    ('[agent]\nmax_stpes = 3\n', "agent.max_stpes: Extra inputs are not permitted"),
    ('[sandbox]\nkind = "local"\n', "--dangerously-no-sandbox"),
    ('[sandbox]\nkind = "chroot"\n', "sandbox.kind"),
    ('[sandbox]\npass_env = ["GITHUB_TOKEN"]\n', "never passed into the sandbox"),
    ('[model]\ntemperature = "warm"\n', "model.temperature"),
    ('[model\n', "not valid TOML"),
])
def test_bad_files_name_the_key_and_the_file(tmp_path, text, expected):
    (tmp_path / "nightowl.toml").write_text(text)
    with pytest.raises(UsageError) as e:
        load_settings(tmp_path / "nightowl.toml")
    assert expected in str(e.value) and "nightowl.toml" in str(e.value)


@pytest.mark.parametrize("text", ['[sandbox]\nnetwork = true\n', '[sandbox]\nwritable_paths = ["/home"]\n',
                                  '[sandbox.limits]\nmemory_mb = 65536\n', '[model]\napi_key_env = "AWS_SECRET_ACCESS_KEY"\n',
                                  '[sandbox.limits]\ncpu_seconds = 0\n'])
def test_a_repository_file_cannot_loosen_the_sandbox_but_an_explicit_one_can(tmp_path, text):
    (tmp_path / "nightowl.toml").write_text(text)
    with pytest.raises(UsageError, match="--config FILE"):
        load_settings(repo=tmp_path)
    if "cpu_seconds = 0" not in text:
        load_settings(config=tmp_path / "nightowl.toml")
    (tmp_path / "nightowl.toml").write_text('[sandbox]\nnetwork = false\n[sandbox.limits]\nmemory_mb = 512\n')
    assert load_settings(repo=tmp_path).settings.sandbox.limits.memory_mb == 512


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_config_show_prints_values_and_sources(tmp_path):
    config = tmp_path / "other.toml"
    config.write_text('[shift]\nworkers = 3\n')
    proc = nightowl("config", "show", "--config", config, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["settings"]["shift.workers"] == {"value": 3, "source": str(config)}
    assert data["settings"]["agent.max_steps"] == {"value": AgentConfig().max_steps, "source": "default"}
    text = nightowl("config", "show", "--config", config)
    assert text.returncode == 0 and "shift.workers" in text.stdout and str(config) in text.stdout


def test_a_shift_configured_entirely_from_nightowl_toml(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_tasks(repo / "tasks.jsonl", 3)
    with ScriptedServer(agent_reply) as server:
        (repo / "nightowl.toml").write_text(
            f'[model]\nname = "{server.model}"\nbase_url = ["{server.base_url}"]\ntemperature = 0.3\n'
            f'max_retries = 1\n[agent]\nmax_steps = 5\n[sandbox.limits]\nmax_processes = 128\n'
            f'[shift]\ntasks = "tasks.jsonl"\nout = "{tmp_path / "out"}"\nworkers = 2\n')
        proc = nightowl("shift", repo, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["complete"] and result["states"]["done"] == 3
    assert len(nightowl_branches(repo)) == 3
    sent = [r for r in server.chat_requests()]
    assert sent and all(r["temperature"] == 0.3 for r in sent)
    traj = json.loads(next((tmp_path / "out" / "runs").glob("*/trajectory.json")).read_text())
    assert traj["settings"]["agent"]["max_steps"] == 5 and traj["settings"]["limits"]["max_processes"] == 128
    assert traj["sandbox"]["backend"] == "bwrap"


def test_shift_refuses_local_and_warns_like_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    base = ["shift", repo, "--tasks", tasks, "--base-url", "http://127.0.0.1:9/v1", "--model", "scripted",
            "--out", tmp_path / "out", "--max-attempts", "1", "--json"]
    refused = nightowl(*base, "--sandbox", "local")
    assert refused.returncode == 2 and "--dangerously-no-sandbox" in refused.stderr
    assert "Traceback" not in refused.stderr
    with ScriptedServer(agent_reply) as server:
        base[base.index("http://127.0.0.1:9/v1")] = server.base_url
        loud = nightowl(*base, "--dangerously-no-sandbox")
    assert "RUNNING WITHOUT A SANDBOX" in loud.stderr, loud.stderr[-2000:]
    assert loud.returncode == 0, loud.stderr[-2000:]


def test_shift_says_what_is_missing(tmp_path):
    repo = make_repo(tmp_path / "repo")
    proc = nightowl("shift", repo)
    assert proc.returncode == 2
    assert "missing --tasks, --model, --out" in proc.stderr and "Traceback" not in proc.stderr


def test_the_readme_example_is_a_valid_configuration(tmp_path):
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Configuration", 1)[1].split("\n### ", 1)[0]
    (example,) = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    (tmp_path / "night.toml").write_text(example)
    s = load_settings(tmp_path / "night.toml").settings
    assert s.shift.workers == 8 and s.model.base_url[1] == "http://gpu2:8000/v1" and s.sandbox.pass_env
    assert s.shift.tasks == tmp_path.resolve() / "tasks.yaml"


def test_the_sandbox_table_is_shared_key_for_key_with_the_repository_loader(tmp_path):
    from orchestrator.settings import SandboxSettings
    from sandbox.repo_config import NIGHTOWL_SANDBOX_SETTINGS, SandboxDeclarations, parse_repo_config

    assert set(SandboxSettings.model_fields) == NIGHTOWL_SANDBOX_SETTINGS | set(SandboxDeclarations.model_fields)
    text = '[sandbox]\nkind = "bwrap"\npath = ["/opt/bin"]\n[sandbox.limits]\nmemory_mb = 512\n'
    assert parse_repo_config(text, "t").sandbox.path == ["/opt/bin"]
    (tmp_path / "nightowl.toml").write_text(text)
    assert load_settings(repo=tmp_path).settings.sandbox.kind == "bwrap"
