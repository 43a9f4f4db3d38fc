"""Shared fixtures: the tiny model (built once per session) and one real vLLM server for the whole suite.

Starting vLLM on CPU costs ~30-60 s and ~3 GB, so every test that needs it shares the session server.
"""
from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from orchestrator.serving.vllm_server import VLLMServer

# Ray reads its auth mode once per process, at import: the tests run as a user of Ray's default token
# authentication would (local clusters and the two-node `ray start` cluster share ~/.ray/auth_token).
os.environ.setdefault("RAY_AUTH_MODE", "token")

@pytest.fixture(scope="session", autouse=True)
def environment_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Environments the tests' repositories declare (nightowl.toml) are built here, not in ~/.nightowl/envs."""
    os.environ["NIGHTOWL_ENV_CACHE"] = str(tmp_path_factory.mktemp("envs"))


TINY_SERVED_NAME = "tiny"
TINY_MAX_MODEL_LEN = 4096
# Random weights write endless whitespace inside a constrained call; pinning every tool's argument schema (and
# the logit bias in tests/cross) lets vLLM's hermes parser return real tool calls from the tiny model.
TINY_EXTRA_ARGS = ["--tool-strict-level", "parameter"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.finetune.tiny_model import build_tiny_model

    started = time.monotonic()
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    print(f"\n[tiny model built in {time.monotonic() - started:.1f} s]")
    return path


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    from orchestrator.serving.vllm_server import ServerConfig, VLLMServer

    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vLLM is not installed: install nightowl[serve-cpu] (see README); CI must run this test")
    config = ServerConfig(model=str(tiny_model_dir), served_model_name=TINY_SERVED_NAME, device="cpu",
                          max_model_len=TINY_MAX_MODEL_LEN, lora=True, max_lora_rank=8, max_loras=2,
                          startup_timeout_s=600, extra_args=TINY_EXTRA_ARGS, log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    with VLLMServer(config) as server:
        print(f"\n[vLLM server healthy after {server.startup_s:.1f} s at {server.base_url}]")
        yield server
