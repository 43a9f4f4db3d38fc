"""One configuration: defaults < nightowl.toml < flags, `config show`, and a shift configured only by the file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.scripted_server import ScriptedServer
from orchestrator.errors import UsageError
from orchestrator.settings import Settings, load_settings
from orchestrator.shift.engine import ShiftOptions
from tests.helpers import nightowl
from tests.orchestrator.helpers import agent_reply, make_repo, nightowl_branches, write_tasks

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_come_from_the_models_that_use_them():
    from orchestrator.pipelines.evaluate import EvalOptions
    from orchestrator.pipelines.flywheel import FlywheelOptions
    from orchestrator.pipelines.generate_run import GenerateOptions
    from orchestrator.serving.vllm_server import ServerConfig
    from training.dataset.export import ExportOptions
    from training.finetune.train import TrainOptions

    s = Settings()
    assert s.agent.max_steps == AgentConfig().max_steps
    assert s.model.max_retries == SamplingOptions().max_retries
    for section, model in ((s.generate, GenerateOptions), (s.eval, EvalOptions), (s.flywheel, FlywheelOptions),
                           (s.export, ExportOptions), (s.train, TrainOptions), (s.shift, ShiftOptions)):
        own = {k: v for k, v in section.model_dump(exclude={"gradient_checkpointing"}).items()
               if k in model.model_fields and not model.model_fields[k].is_required()}
        assert own == {k: model.model_fields[k].get_default(call_default_factory=True) for k in own}, section
    assert (s.serve.host, s.serve.device) == (ServerConfig(model="m").host, ServerConfig(model="m").device)
    assert s.flywheel.max_lora_rank == TrainOptions.model_fields["rank"].default
    assert TrainOptions.model_fields["gradient_checkpointing"].default is None and s.train.gradient_checkpointing == "auto"
    # the options of the commands that run agents take the agent's and the model's defaults, not their own
    for model in (GenerateOptions, EvalOptions, FlywheelOptions):
        assert model.model_fields["max_steps"].default == AgentConfig().max_steps
        assert model.model_fields["max_tokens"].default == SamplingOptions().max_tokens
        assert model.model_fields["workers"].default == ShiftOptions.model_fields["workers"].default


def test_shift_options_nest_the_agent_and_sampling_models_without_flat_copies():
    nested = {"agent": AgentConfig, "sampling": SamplingOptions}
    assert {name: ShiftOptions.model_fields[name].annotation for name in nested} == nested
    copied = set(ShiftOptions.model_fields) & (set(AgentConfig.model_fields) | set(SamplingOptions.model_fields)
                                               | {"task_timeout_s", "model_timeout_s", "model_retries"})
    assert copied == set()


def test_file_then_flags_with_their_sources(tmp_path):
    (tmp_path / "nightowl.toml").write_text(
        '[model]\nname = "coder"\ntemperature = 0.4\nbase_url = "http://h:1/v1"\n'
        '[agent]\nmax_steps = 7\n[sandbox]\nnetwork = true\n[sandbox.limits]\nmemory_mb = 8192\n[shift]\nout = "night"\n'
        '[plugin]\nowned_by = "another command"\n')
    loaded = load_settings(tmp_path / "nightowl.toml", flags={"agent.max_steps": (9, "--max-steps")})
    s = loaded.settings
    assert (s.model.name, s.model.temperature, s.model.base_url) == ("coder", 0.4, ["http://h:1/v1"])
    assert s.agent.max_steps == 9 and s.sandbox.limits.memory_mb == 8192
    assert s.sandbox.policy().limits.memory_mb == 8192 and s.sandbox.policy().network
    assert s.shift.out == tmp_path.resolve() / "night"  # relative to the file
    assert s.model_extra == {"plugin": {"owned_by": "another command"}}
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
            f'max_retries = 1\nextra_body = {{top_k = 5}}\n[agent]\nmax_steps = 5\n[sandbox.limits]\nmax_processes = 128\n'
            f'[shift]\ntasks = "tasks.jsonl"\nout = "{tmp_path / "out"}"\nworkers = 2\n')
        proc = nightowl("shift", repo, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["complete"] and result["states"]["done"] == 3
    assert len(nightowl_branches(repo)) == 3
    sent = [r for r in server.chat_requests()]
    assert sent and all(r["temperature"] == 0.3 and r["top_k"] == 5 for r in sent)
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


OUTSIDE_THE_SETTINGS = {("functions", "--commit"), ("tiny-model", "--pretrain-steps"),
                        ("bench-history", "--max-changed-lines"), ("model import", "--dtype")}
"""Options of commands without a settings section, whose literal defaults are their own."""
SECTIONS_WITH_OPTIONS = ("generate", "eval", "flywheel", "export", "train", "serve")


def cli_options():
    """(command path, click option) for every option of every `nightowl` command."""
    import typer.main

    from orchestrator.cli.main import app

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            for param in command.params:
                if param.param_type_name == "option":
                    yield " ".join(path), param
    return list(walk(typer.main.get_command(app), []))


def documented_key(option) -> str | None:
    import re

    found = re.search(r"\[default: .*; `([\w.]+)` in nightowl.toml\]", option.help or "")
    return found.group(1) if found else None


def test_every_cli_default_is_its_settings_field_and_no_literal_default_is_left():
    from orchestrator.cli.config import DEFAULTS

    literal = {(cmd, option.opts[0]): option.default for cmd, option in cli_options()
               if not option.required and option.default not in (None, [], False)
               and (cmd, option.opts[0]) not in OUTSIDE_THE_SETTINGS}
    assert literal == {}, "give these options a settings field and default them to None"
    flags_on = {(cmd, o.opts[0]) for cmd, o in cli_options() if o.is_flag and o.default is not False}
    assert flags_on == set()
    keys = {}
    for cmd, option in cli_options():
        key = documented_key(option)
        if key is None:
            continue
        assert key in DEFAULTS, f"{cmd} {option.opts[0]} names `{key}`, which is not a setting"
        shown = "none" if DEFAULTS[key] is None or DEFAULTS[key] == [] else DEFAULTS[key]
        assert f"[default: {shown};" in option.help, (cmd, option.opts[0])
        assert option.default in (None, []), f"{cmd} {option.opts[0]} must default to None: `{key}` holds the default"
        keys.setdefault(key, set()).add(cmd)
    unread = [k for k in DEFAULTS if k.split(".")[0] in SECTIONS_WITH_OPTIONS and k not in keys]
    assert unread == [], "settings no command line option reads"


@pytest.mark.parametrize("module,table", [("generate", "GENERATE_KEYS"), ("eval", "EVAL_KEYS"),
                                          ("flywheel", "FLYWHEEL_KEYS")])
def test_the_key_a_command_reads_is_the_one_its_help_names(module, table):
    import importlib

    keys = getattr(importlib.import_module(f"orchestrator.cli.{module}"), table)
    options = {o.name: o for cmd, o in cli_options() if cmd == module}
    assert {param: documented_key(options[param]) for param in keys} == {p: k for p, (k, _) in keys.items()}
    assert {param: flag for param, (_, flag) in keys.items()} == {p: options[p].opts[0] for p in keys}


def parsed(command: str, *args: object) -> dict:
    """The parameters `nightowl COMMAND ARGS` parses to (what the command's body gets), nothing run."""
    import typer.main

    from orchestrator.cli.main import app

    return typer.main.get_command(app).commands[command].make_context(command, [str(a) for a in args]).params


def test_train_and_export_options_come_from_flags_then_the_file_then_the_defaults(tmp_path):
    from orchestrator.cli.train import export_options, train_options
    from training.finetune.train import TrainOptions

    config = tmp_path / "night.toml"
    config.write_text('[train]\nepochs = 3.0\nrank = 8\ngradient_checkpointing = "on"\n[export]\nval_share = 0.25\n')
    options = train_options(parsed("train", "--base", "b", "--plan", "--config", config, "--rank", "4"))
    assert (options.epochs, options.rank, options.gradient_checkpointing) == (3.0, 4, True)
    assert options.max_length == TrainOptions.model_fields["max_length"].default
    exported = export_options(parsed("export", tmp_path, "--out", tmp_path / "ds", "--config", config))
    assert exported.val_share == 0.25 and exported.min_fit_share == Settings().export.min_fit_share
    with pytest.raises(UsageError, match="--val-share"):
        export_options(parsed("export", tmp_path, "--out", tmp_path / "ds", "--val-share", "1.5"))


def test_generate_options_take_agent_and_model_from_the_shared_sections(tmp_path):
    from orchestrator.cli.generate import generate_options

    repo = make_repo(tmp_path / "repo")
    (repo / "nightowl.toml").write_text('[agent]\nmax_steps = 9\n[model]\nmax_tokens = 1000\n'
                                        '[generate]\nworkers = 7\n')
    options = generate_options(parsed("generate", repo, "--samples", 1, "--base-url", "http://h:1/v1", "--model", "t",
                                      "--out", tmp_path / "gen", "--temperature", 0.2))
    assert (options.max_steps, options.max_tokens, options.workers, options.temperature) == (9, 1000, 7, 0.2)
    assert options.model_retries == SamplingOptions().max_retries and options.seed == Settings().generate.seed


def test_config_show_lists_every_section_with_sources(tmp_path):
    config = tmp_path / "other.toml"
    config.write_text('[generate]\nworkers = 7\n[train]\nrank = 8\n')
    proc = nightowl("config", "show", "--config", config)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:]}
    assert rows["generate.workers"] == ["7", str(config)] and rows["train.rank"] == ["8", str(config)]
    assert rows["eval.metric"] == ['"recall"', "default"] and rows["flywheel.samples"][-1] == "default"
    sections = {key.split(".")[0] for key in rows}
    assert {"model", "agent", "sandbox", "run", "shift", "generate", "eval", "flywheel", "export", "train",
            "serve"} <= sections
