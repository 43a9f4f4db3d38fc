"""One configuration for every command: defaults < `nightowl.toml` < command-line flags.

The file is `--config FILE`, else `nightowl.toml` at the top of the repository being worked on (else in the
current directory, for commands without a repository). A file found in the repository may only tighten the
sandbox (GUARDED); loosening it takes a file passed with --config. Each section is a table:

    [model]    endpoint and sampling (run, shift; generate and eval later)
    [agent]    limits of one agent run
    [sandbox]  backend, policy (network, writable paths, extra variables), [sandbox.limits]; the
               repository's toolchains / path are read by sandbox/repo_config.py from the task's commit
    [environment]  the repository's set-up command (sandbox/repo_config.py; kept here as an unknown section)
    [run]      `nightowl run` only        [shift]   `nightowl shift` only

Defaults live in one place each: the agent, model, sandbox and shift models these sections are built from.
Known sections are strict (a misspelt key is an error naming it). Sections this version does not know are
kept as they are (`Settings.model_extra`) for the command that owns them; to add one, add a field here
with its own section model. Running without a sandbox is never a file setting: it takes the loud
`--dangerously-no-sandbox` flag.
"""
from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.loop import AgentConfig
from agent.model import SamplingOptions
from agent.run import DEFAULT_OUT
from orchestrator.errors import UsageError
from orchestrator.shift.engine import ShiftOptions
from sandbox.environment import ALLOWED_VARIABLES, is_secret_name
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.select import SandboxKind

CONFIG_NAME = "nightowl.toml"
ISOLATING_SANDBOXES: tuple[str, ...] = tuple(k for k in get_args(SandboxKind) if k != "local")
"""Every backend that isolates; the unisolated `local` one is reached only through --dangerously-no-sandbox."""
EXECUTORS = ("local", "ray")


def default_of(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].get_default(call_default_factory=True)


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
    workers: int = Field(default=default_of(ShiftOptions, "workers"), gt=0)
    per_server: int | None = Field(default=None, gt=0)
    until: str | None = None
    hours: float | None = Field(default=None, gt=0)
    token_budget: int | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=default_of(ShiftOptions, "max_attempts"), gt=0)
    max_infra_retries: int = Field(default=default_of(ShiftOptions, "max_infra_retries"), ge=0)
    stall_s: float = Field(default=default_of(ShiftOptions, "stall_s"), gt=0)
    executor: Literal[EXECUTORS] = "local"  # type: ignore[valid-type]
    ray_address: str | None = None
    workdir: Path | None = None
    """Where workers keep their reusable workspaces (default OUT/workspaces; a tmpfs such as /dev/shm is fastest)."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: ModelSettings = Field(default_factory=ModelSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    shift: ShiftSettings = Field(default_factory=ShiftSettings)


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
