"""One configuration for every command: defaults < `nightowl.toml` < command-line flags.

The file is `--config FILE`, else `nightowl.toml` at the top of the repository being worked on (else in the
current directory, for commands without a repository). A file found in the repository may only tighten the
sandbox (GUARDED); loosening it takes a file passed with --config. Each section is a table:

    [model]    endpoint and sampling (every command that calls a model: run, shift, generate, eval, flywheel)
    [agent]    limits of one agent run (every command that runs agents)
    [sandbox]  backend, policy (network, writable paths, extra variables), [sandbox.limits]; the
               repository's toolchains / path are read by sandbox/repo_config.py from the task's commit
    [environment]  the repository's set-up command (sandbox/repo_config.py; kept here as an unknown section)
    [run]      `nightowl run`            [shift]     `nightowl shift`
    [generate] `nightowl generate`       [eval]      `nightowl eval`      [flywheel]  `nightowl flywheel`
    [export]   `nightowl export`         [train]     `nightowl train`     [serve]     every vLLM server started

A command's own section holds only what is its own; what commands share (max_steps, max_tokens, tool_choice,
the sandbox) is read from [agent], [model] and [sandbox], so one value holds for all of them. Defaults live in
one place each: the option models the sections copy their fields from (`same_as`), and every CLI option
defaults to "not given" so that its value comes from here (tests/orchestrator/test_settings.py checks both).
Known sections are strict (a misspelt key is an error naming it). Sections this version does not know are
kept as they are (`Settings.model_extra`) for the command that owns them; to add one, add a field here
with its own section model. Running without a sandbox is never a file setting: it takes the loud
`--dangerously-no-sandbox` flag.
"""
from __future__ import annotations

import tomllib
import typing
from copy import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.run import DEFAULT_OUT
from orchestrator.errors import UsageError
from orchestrator.pipelines.evaluate import EvalOptions
from orchestrator.pipelines.flywheel import FlywheelOptions
from orchestrator.pipelines.generate_run import GenerateOptions
from orchestrator.serving.vllm_server import ServerConfig
from orchestrator.shift.engine import ShiftOptions
from sandbox.environment import ALLOWED_VARIABLES, is_secret_name
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.select import ISOLATING_SANDBOXES
from training.dataset.export import ExportOptions
from training.finetune.train import TrainOptions

CONFIG_NAME = "nightowl.toml"
EXECUTORS = ("local", "ray")


def default_of(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].get_default(call_default_factory=True)


def same_as(model: type[BaseModel], field: str) -> Any:
    """That model's field, default and constraints included (typed Any so that it can stand as a default)."""
    info: FieldInfo = copy(model.model_fields[field])
    return info


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(SamplingOptions, Strict):
    """[model]"""
    name: str | None = None
    """Served model name; for `run` without base_url, the hub id or directory vLLM serves."""
    base_url: list[str] = Field(default_factory=list)
    """OpenAI-compatible endpoints; `run` uses the first, a shift shares the agents among all."""

    @field_validator("base_url", mode="before")
    @classmethod
    def one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class AgentSettings(AgentConfig, Strict):
    """[agent]"""


class LimitsSettings(ResourceLimits, Strict):
    """[sandbox.limits]"""


class SandboxSettings(Strict):
    """[sandbox]"""
    kind: Literal[ISOLATING_SANDBOXES] = "auto"  # type: ignore[valid-type]
    network: bool = default_of(Policy, "network")
    writable_paths: list[str] = Field(default_factory=list)
    """Host paths bound read-write besides the workspace."""
    pass_env: list[str] = Field(default_factory=list)
    """Extra environment variables passed in; names that look like secrets are refused."""
    tmp_size_mb: int = Field(default=default_of(Policy, "tmp_size_mb"), gt=0)
    shm_size_mb: int = Field(default=default_of(Policy, "shm_size_mb"), gt=0)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    toolchains: list[str] = Field(default_factory=list)
    """Host paths mounted read-only; read by the sandbox from the task's commit (sandbox/repo_config.py)."""
    path: list[str] = Field(default_factory=list)
    """Put in front of PATH inside; read like `toolchains`."""

    @field_validator("pass_env")
    @classmethod
    def no_secrets(cls, names: list[str]) -> list[str]:
        secret = [n for n in names if is_secret_name(n)]
        if secret:
            raise ValueError(f"{secret} look like secrets and are never passed into the sandbox")
        return names

    def policy(self) -> Policy:
        return Policy(network=self.network, writable_paths=self.writable_paths,
                      env_allow=(*ALLOWED_VARIABLES, *self.pass_env), tmp_size_mb=self.tmp_size_mb,
                      shm_size_mb=self.shm_size_mb, limits=self.resource_limits())

    def resource_limits(self) -> ResourceLimits:
        return ResourceLimits(**self.limits.model_dump())


class RunSettings(Strict):
    """[run]"""
    out: Path = DEFAULT_OUT
    commit: str = "HEAD"


class ShiftSettings(Strict):
    """[shift]"""
    tasks: Path | None = None
    out: Path | None = None
    workers: int = same_as(ShiftOptions, "workers")
    per_server: int | None = Field(default=None, gt=0)
    until: str | None = None
    hours: float | None = Field(default=None, gt=0)
    token_budget: int | None = Field(default=None, gt=0)
    max_attempts: int = same_as(ShiftOptions, "max_attempts")
    max_infra_retries: int = same_as(ShiftOptions, "max_infra_retries")
    stall_s: float = same_as(ShiftOptions, "stall_s")
    executor: Literal[EXECUTORS] = "local"  # type: ignore[valid-type]
    ray_address: str | None = None
    ray_cpus_per_agent: float = Field(default=1.0, gt=0)
    ray_memory_mb_per_agent: int | None = Field(default=None, gt=0)
    """None: [sandbox] memory_mb, what one agent's commands may use."""
    workdir: Path | None = None
    """Where workers keep their reusable workspaces (default OUT/workspaces; a tmpfs such as /dev/shm is fastest)."""


class GenerateSettings(Strict):
    """[generate]; its agents' limits come from [agent], sampling from [model], the backend from [sandbox]."""
    workers: int = same_as(GenerateOptions, "workers")
    seed: int = same_as(GenerateOptions, "seed")
    min_lines: int = same_as(GenerateOptions, "min_lines")
    """`nightowl functions` reads it too."""
    temperature: float = same_as(GenerateOptions, "temperature")
    """Generate's own, not [model]'s: the teacher samples warmer than an agent run."""
    stall_s: float = same_as(GenerateOptions, "stall_s")


class EvalSettings(Strict):
    """[eval]; limits from [agent], sampling and the API-key variable from [model], the backend from [sandbox]."""
    workers: int = same_as(EvalOptions, "workers")
    metric: str = same_as(EvalOptions, "metric")
    seed: int = same_as(EvalOptions, "seed")


class FlywheelSettings(Strict):
    """[flywheel]; what its generate and eval steps share with those commands comes from [agent] and [model]."""
    samples: int = same_as(FlywheelOptions, "samples")
    metric: str = same_as(FlywheelOptions, "metric")
    workers: int = same_as(FlywheelOptions, "workers")
    train_args: list[str] = same_as(FlywheelOptions, "train_args")
    generate_args: list[str] = same_as(FlywheelOptions, "generate_args")
    max_lora_rank: int = same_as(TrainOptions, "rank")
    """Of the server the flywheel starts: the rank `train` gives adapters by default."""
    release: str = "auto"
    """Around train: auto, or one of the modes (`choose_release` checks it and says which there are)."""


class ExportSettings(Strict):
    """[export]"""
    min_recall: float | None = same_as(ExportOptions, "min_recall")
    max_tokens: int | None = same_as(ExportOptions, "max_tokens")
    tokenizer: str | None = same_as(ExportOptions, "tokenizer")
    val_share: float = same_as(ExportOptions, "val_share")
    max_changed_lines: int | None = same_as(ExportOptions, "max_changed_lines")
    min_fit_share: float = same_as(ExportOptions, "min_fit_share")


class TrainSettings(Strict):
    """[train]"""
    epochs: float = same_as(TrainOptions, "epochs")
    lr: float | None = same_as(TrainOptions, "lr")
    rank: int = same_as(TrainOptions, "rank")
    max_length: int = same_as(TrainOptions, "max_length")
    batch_size: int = same_as(TrainOptions, "batch_size")
    grad_accum: int = same_as(TrainOptions, "grad_accum")
    save_steps: int = same_as(TrainOptions, "save_steps")
    max_steps: int = same_as(TrainOptions, "max_steps")
    packing: Literal["auto", "on", "off"] = same_as(TrainOptions, "packing")
    seed: int = same_as(TrainOptions, "seed")
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """TrainOptions' None / True / False, as the command line spells them."""
    memory_gib: float | None = same_as(TrainOptions, "memory_gib")


class ServeSettings(Strict):
    """[serve]: host and port of `nightowl serve`; the device of every vLLM server nightowl starts."""
    host: str = same_as(ServerConfig, "host")
    port: int = Field(default=8000, ge=1, le=65535)
    """`serve`'s port (servers that `run`, `shift` and the flywheel start take a free one)."""
    device: Literal["auto", "cuda", "cpu"] = same_as(ServerConfig, "device")


class Settings(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: ModelSettings = Field(default_factory=ModelSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    shift: ShiftSettings = Field(default_factory=ShiftSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    flywheel: FlywheelSettings = Field(default_factory=FlywheelSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)


class Loaded(BaseModel):
    settings: Settings
    file: Path | None
    sources: dict[str, str]
    """Dotted key -> where its value came from: `default`, the file, or the flag."""


def find_config(explicit: Path | None, repo: Path | None = None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"config file {explicit} does not exist")
        return explicit
    for directory in ([repo] if repo is not None else []) + [Path.cwd()]:
        candidate = directory.expanduser() / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if repo is not None:
            break  # a repository's settings come from that repository only, never from where you stand
    return None


def read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text (TOML must be)") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def field_type(dotted: str) -> Any:
    """The annotation of a known key (None for keys of unknown sections)."""
    model: Any = Settings
    annotation = None
    for part in dotted.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation
    return annotation


def is_path(dotted: str) -> bool:
    annotation = field_type(dotted)
    return annotation is Path or Path in typing.get_args(annotation)


GUARDED = ("sandbox.network", "sandbox.writable_paths", "sandbox.pass_env", "sandbox.tmp_size_mb",
           "sandbox.shm_size_mb", "sandbox.limits.", "model.api_key_env")
"""Keys a repository's own nightowl.toml may only tighten: the repository is not necessarily yours, and these
loosen the sandbox or choose which of your environment variables is sent to the server as the API key."""


def refuse_loosening(path: Path, from_file: dict[str, Any]) -> None:
    defaults = flatten(Settings().model_dump())
    for key, value in from_file.items():
        if not key.startswith(GUARDED):
            continue
        default = defaults.get(key)
        tighter = (value == default or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                        and isinstance(default, (int, float)) and 0 < value <= default))
        if not tighter:
            raise UsageError(f"{path}: `{key} = {value!r}` loosens the sandbox or picks the API-key variable, which a "
                             "repository's own nightowl.toml may not do; put it in a file of yours and pass "
                             "--config FILE")


def load_settings(config: Path | None = None, repo: Path | None = None,
                  flags: dict[str, tuple[Any, str]] | None = None) -> Loaded:
    """`flags` maps dotted keys to (value, flag name) for the flags actually given on the command line."""
    path = find_config(config, repo)
    from_file = flatten(read_config(path)) if path else {}
    if path and from_file.get("sandbox.kind") == "local":
        raise UsageError(f"{path}: sandbox.kind = \"local\" is not allowed in a file; running without a sandbox "
                         "takes the --dangerously-no-sandbox flag on the command line")
    if path and config is None:
        refuse_loosening(path, from_file)
    for key, value in from_file.items():  # relative paths in a file are relative to that file
        if path and isinstance(value, str) and is_path(key) and not Path(value).expanduser().is_absolute():
            from_file[key] = str(path.parent.resolve() / value)
    given = {key: value for key, (value, _) in (flags or {}).items()}
    try:
        settings = Settings.model_validate(nest({**from_file, **given}))
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        origin = next((flag for k, (_, flag) in (flags or {}).items() if k == key), None)
        where = origin or (f"{path}: {key}" if path else key)
        raise UsageError(f"{where}: {first['msg']}") from None
    sources = {key: "default" for key in flatten(settings.model_dump(exclude=set(settings.model_extra or {})))}
    sources.update({key: str(path) for key in from_file})
    sources.update({key: flag for key, (_, flag) in (flags or {}).items()})
    return Loaded(settings=settings, file=path, sources=sources)


def effective_values(loaded: Loaded) -> list[tuple[str, Any, str]]:
    """(key, value, source) for every setting, known sections first, in declaration order."""
    values = flatten(loaded.settings.model_dump(mode="json"))
    return [(key, value, loaded.sources.get(key, "default")) for key, value in values.items()]
