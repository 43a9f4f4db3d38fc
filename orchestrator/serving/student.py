"""The flywheel's student server and the accelerator it shares with `nightowl train`.

vLLM takes ~90% of each GPU it serves on, so `train` on the same GPU fails for memory. Around `train` the flywheel
releases the server and restores it afterwards:

- `sleep`: vLLM's sleep mode (`--enable-sleep-mode`, with the dev endpoints of VLLM_SERVER_DEV_MODE=1):
  POST /sleep?level=1 moves the weights to CPU memory and drops the KV cache; POST /wake_up brings them back.
  Works for the server the flywheel starts (it adds both) and for a server the user runs with them.
- `restart`: stop the server the flywheel started, start it again (same port) after training.
- `none`: nothing to release: training uses other devices (`--train-devices` apart from `--serve-devices`), the
  server runs elsewhere, or the machine has no accelerator (CPU: RAM is shared, the CPU server's ~3 GB stays).

Every operation is idempotent, so a flywheel killed anywhere and re-run brings the server into the state its next
step needs: released for `train`, serving (with the adapters loaded again) for load and eval.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx

from orchestrator.errors import UsageError
from orchestrator.serving.vllm_server import ServingError, is_loopback, server_root

Release = Literal["none", "sleep", "restart"]
SLEEP_LEVEL = 1
"""Level 1 keeps the weights in CPU memory (wake-up is a copy back); level 2 would drop them."""
SLEEP_ENV = {"VLLM_SERVER_DEV_MODE": "1"}
SLEEP_ARGS = ["--enable-sleep-mode"]


def parse_devices(text: str | None, flag: str) -> list[int] | None:
    """`"4,5,6,7"` -> [4, 5, 6, 7]; None stays None."""
    if text is None:
        return None
    try:
        devices = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        devices = []
    if not devices or any(d < 0 for d in devices) or len(set(devices)) != len(devices):
        raise UsageError(f"{flag} must list device indices like 0,1,2,3, not {text!r}")
    return devices


def visible_gpus() -> list[int]:
    """Indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES, else all torch sees); [] without CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return list(range(torch.cuda.device_count()))


def choose_release(requested: str, own_server: bool, train: list[int] | None, serve: list[int] | None,
                   url: str, gpus: list[int]) -> tuple[Release, str]:
    """The release mode and why, or a UsageError when training and serving would share a device that cannot be
    released. `requested`: auto, sleep, restart or none."""
    if requested not in ("auto", "sleep", "restart", "none"):
        raise UsageError(f"--release must be auto, sleep, restart or none, not {requested!r}")
    if serve is not None and own_server and gpus and any(d not in gpus for d in serve):
        raise UsageError(f"--serve-devices {','.join(map(str, serve))}: this machine has GPUs "
                         f"{','.join(map(str, gpus))}")
    if train is not None and gpus and any(d not in gpus for d in train):
        raise UsageError(f"--train-devices {','.join(map(str, train))}: this machine has GPUs "
                         f"{','.join(map(str, gpus))}")
    shared = sorted(set(train if train is not None else gpus) & set(serve if serve is not None else gpus))
    if train is not None and serve is not None and shared and not own_server and requested != "sleep":
        raise UsageError(f"--train-devices and --serve-devices share GPU {','.join(map(str, shared))}, and nightowl "
                         f"cannot release a server it did not start ({url}): give devices apart, or --release sleep "
                         "for a server started with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1")
    if requested == "sleep" and own_server and not gpus:
        raise UsageError("--release sleep: vLLM's sleep mode needs a GPU; on CPU use --release restart (or none: "
                         "training and serving share RAM)")
    if requested == "restart" and not own_server:
        raise UsageError("--release restart stops and starts the server the flywheel started; with "
                         "--student-base-url, use --release sleep (a server started with --enable-sleep-mode and "
                         "VLLM_SERVER_DEV_MODE=1) or --train-devices apart from the server's")
    if requested != "auto":
        return requested, f"--release {requested}"  # type: ignore[return-value]
    if not gpus:
        return "none", "no GPU here: training and serving share RAM, nothing to release"
    if not own_server and not is_loopback(httpx.URL(url).host):
        return "none", f"the student server {url} is not on this machine"
    if not shared:
        return "none", (f"training on GPU {','.join(map(str, train or []))}, serving on "
                        f"{','.join(map(str, serve or []))}: nothing shared")
    if not own_server:
        where = "--serve-devices" if serve is not None else "every GPU (give --serve-devices: the server's GPUs)"
        raise UsageError(
            f"training would use GPU {','.join(map(str, shared))}, which the student server at {url} may hold "
            f"({where}), and nightowl cannot release a server it did not start: give --train-devices apart from "
            "the server's GPUs, or --release sleep for a server started with --enable-sleep-mode and "
            "VLLM_SERVER_DEV_MODE=1")
    return "sleep", f"training and serving share GPU {','.join(map(str, shared))}: vLLM sleeps during train"


class StudentServer:
    """The student server as the flywheel drives it around `train` (see the module docstring)."""

    def __init__(self, url: str, release: Release = "none", start: Callable[[], Any] | None = None,
                 describe: str = ""):
        """`start`: starts the server nightowl runs and returns an object with `stop()` (None: the user's)."""
        self.url, self.mode, self.starter, self.describe_server = url, release, start, describe
        self.process: Any = None
        self.sleeping = False
        self.restarts = 0

    @property
    def own(self) -> bool:
        return self.starter is not None

    def ensure_serving(self) -> bool:
        """Serving after this; True when it was started or woken just now (runtime adapters must be loaded again)."""
        if self.own and self.process is None:
            self.process = self.starter()
            self.restarts += 1
            return True
        if self.mode == "sleep" and (self.sleeping or is_sleeping(self.url)):
            wake(self.url)
            self.sleeping = False
            return True
        return False

    def release(self) -> dict[str, Any]:
        """Nothing of the accelerator held after this (for `sleep` and `restart`); what was done."""
        if self.mode == "restart":
            if self.process is not None:
                self.process.stop()
                self.process = None
                return {"mode": "restart", "action": "stopped"}
            return {"mode": "restart", "action": "not running"}
        if self.mode == "sleep":
            if self.own and self.process is None:
                return {"mode": "sleep", "action": "not running"}
            if is_sleeping(self.url):
                self.sleeping = True
                return {"mode": "sleep", "action": "already sleeping"}
            sleep(self.url)
            self.sleeping = True
            return {"mode": "sleep", "action": f"slept (level {SLEEP_LEVEL})"}
        return {"mode": "none", "action": "nothing to release"}

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def release_text(self) -> str:
        return {"sleep": f"POST {server_root(self.url)}/sleep?level={SLEEP_LEVEL} (weights to CPU memory, KV cache "
                         "dropped)",
                "restart": f"stop the vLLM server nightowl started ({self.describe_server or self.url})",
                "none": "nothing to release"}[self.mode]

    def restore_text(self) -> str:
        again = "; load the best adapter and this round's candidate again"
        return {"sleep": f"POST {server_root(self.url)}/wake_up" + again,
                "restart": f"start the vLLM server again on the same port ({self.describe_server or self.url})"
                           + again,
                "none": "nothing to restore"}[self.mode]


def sleep_request(url: str, method: str, path: str, timeout_s: float = 600.0) -> httpx.Response:
    target = server_root(url) + path
    try:
        response = httpx.request(method, target, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise ServingError(f"cannot reach the student server at {target}: {e}") from None
    if response.status_code == 404:
        raise ServingError(f"the student server has no {path.split('?')[0]}: start vLLM with --enable-sleep-mode and "
                           "VLLM_SERVER_DEV_MODE=1 for --release sleep")
    if response.status_code != 200:
        raise ServingError(f"{method} {target} failed: HTTP {response.status_code}: {response.text.strip()[:300]}")
    return response


def is_sleeping(url: str) -> bool:
    return bool(sleep_request(url, "GET", "/is_sleeping", timeout_s=30).json().get("is_sleeping"))


def sleep(url: str) -> None:
    sleep_request(url, "POST", f"/sleep?level={SLEEP_LEVEL}")
    deadline = time.monotonic() + 60
    while not is_sleeping(url):
        if time.monotonic() > deadline:
            raise ServingError(f"the student server at {url} did not report sleeping within 60 s")
        time.sleep(0.5)


def wake(url: str) -> None:
    sleep_request(url, "POST", "/wake_up")
    deadline = time.monotonic() + 600
    while is_sleeping(url):
        if time.monotonic() > deadline:
            raise ServingError(f"the student server at {url} did not wake within 600 s")
        time.sleep(0.5)


def train_environment(devices: list[int] | None) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for `train` (indices are this machine's, as nvidia-smi numbers them)."""
    if devices is None:
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # the flywheel itself runs on a subset: index into it
        names = [x.strip() for x in visible.split(",")]
        return {"CUDA_VISIBLE_DEVICES": ",".join(names[d] for d in devices if d < len(names))}
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))}
