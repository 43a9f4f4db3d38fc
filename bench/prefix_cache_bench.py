"""Prefix-cache reuse on the real vLLM server: the requests of a 30-step nightowl trajectory, replayed in order.

    python bench/prefix_cache_bench.py [--steps 30]

On a shared machine it first waits for a quiet moment, then takes /tmp/nightowl-slow.lock (the lock every
vLLM/Ray job here holds) before starting vLLM, so it never runs beside another vLLM.

1. The real agent runs 30 steps (bash commands on a real repo, then submit) against a scripted server,
   which keeps the exact request bodies the agent sent.
2. The tiny model (training/finetune/tiny_model.py) is served by the real vLLM OpenAI server (CPU build, prefix
   caching on, as `nightowl serve` starts it) and every body is sent to it in order (max_tokens 1).
3. vLLM's own /metrics counters (prefix-cache queries and hits, in tokens) give the share of prompt tokens
   served from the cache. The ideal: every request reuses all of the previous request's prompt it starts
   with, i.e. only the new suffix is prefilled; computed from the served tokenizer's chat template.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import re
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.loop import AgentConfig  # noqa: E402
from agent.model import ModelConfig  # noqa: E402
from agent.run import RunRequest, run_task  # noqa: E402
from agent.scripted_server import ScriptedServer  # noqa: E402
from bench.agent_bench import make_repo  # noqa: E402
from bench.conditions import load_average, machine, wait_for_quiet  # noqa: E402

COMMANDS = ["ls", "sed -n 1,2p m{i}.py", "grep -n return m{i}.py", "git status --short", "wc -l m{i}.py"]
SERVED = "tiny"


def agent_requests(work: Path, steps: int) -> list[dict[str, Any]]:
    """The request bodies of one real agent run: steps - 2 bash commands, then submit (review) and submit."""
    def reply(request: dict[str, Any]) -> dict[str, Any]:
        turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
        if turn < steps - 2:
            return {"content": f"Step {turn}: checking.",
                    "tool_calls": [{"name": "bash", "arguments": {"command": COMMANDS[turn % len(COMMANDS)].format(i=turn % 12)}}]}
        return {"tool_calls": [{"name": "submit", "arguments": {}}]}

    with ScriptedServer(reply) as server:
        outcome = run_task(RunRequest(repo=make_repo(work), task="Read the modules and report what f3 returns.",
                                      out_dir=work / "runs", sandbox="auto", create_branch=False,
                                      model=ModelConfig(base_url=server.base_url, model="scripted"),
                                      agent=AgentConfig(max_steps=steps)))
        bodies = server.chat_requests()
    if outcome.steps != steps or len(bodies) != steps:
        raise SystemExit(f"the agent run took {outcome.steps} steps ({outcome.exit_status.value}), not {steps}")
    return bodies


def metrics(root_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{root_url}/metrics", timeout=30).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def block_size(root_url: str) -> int | None:
    text = urllib.request.urlopen(f"{root_url}/metrics", timeout=30).read().decode()
    found = re.search(r'vllm:cache_config_info\{[^}]*block_size="(\d+)"', text)
    return int(found.group(1)) if found else None


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        return json.loads(urllib.request.urlopen(request, timeout=600).read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"vLLM answered {e.code}: {e.read().decode(errors='replace')[:2000]}") from None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-model-len", type=int, default=8192,
                        help="the tiny model's window, raised from 4,096 so that 30 steps fit")
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--lock", default="/tmp/nightowl-slow.lock", help="held while vLLM runs")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "nightowl-prefix-bench-vllm.log")
    args = parser.parse_args()
    import vllm
    from transformers import AutoTokenizer

    from orchestrator.serving.vllm_server import ServerConfig, VLLMServer
    from training.finetune.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bodies = agent_requests(work, args.steps)
        model_dir = build_tiny_model(work / "tiny")
        # 30 steps of history outgrow the tiny model's 4,096 positions; RoPE has no learned table, so a longer
        # window only needs the config to say so (the weights are random either way).
        config_path = model_dir / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()),
                                           "max_position_embeddings": args.max_model_len}))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prompts = [tokenizer.apply_chat_template(b["messages"], tools=b.get("tools"), add_generation_prompt=True,
                                                 tokenize=True) for b in bodies]
        prompts = [p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p for p in prompts]
        if max(len(p) for p in prompts) >= args.max_model_len:
            raise SystemExit(f"the longest prompt has {max(len(p) for p in prompts)} tokens, over --max-model-len")
        conditions = wait_for_quiet(args.quiet_load, args.max_wait)
        lock = open(args.lock, "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = ServerConfig(model=str(model_dir), served_model_name=SERVED, device="cpu",
                              max_model_len=args.max_model_len, startup_timeout_s=900,
                              log_path=args.log)
        with VLLMServer(config) as server:
            block = block_size(server.root_url)
            before = metrics(server.root_url)
            served_prompt = []
            for i, body in enumerate(bodies):
                print(f"request {i + 1}/{len(bodies)}: {len(prompts[i])} tokens", file=sys.stderr)
                reply = post(f"{server.base_url}/chat/completions", {**body, "model": SERVED, "max_tokens": 1})
                served_prompt.append(reply["usage"]["prompt_tokens"])
            after = metrics(server.root_url)
    queries = after["vllm:prefix_cache_queries_total"] - before.get("vllm:prefix_cache_queries_total", 0)
    hits = after["vllm:prefix_cache_hits_total"] - before.get("vllm:prefix_cache_hits_total", 0)
    shared = [0] + [common_prefix(a, b) for a, b in zip(prompts, prompts[1:])]
    ideal = sum(shared)
    ideal_blocks = sum(s // block * block for s in shared) if block else None
    total = sum(len(p) for p in prompts)
    print(f"conditions: {machine()}, vLLM {vllm.__version__} (CPU), tiny random-weight Qwen2 from training/finetune/tiny_model.py, "
          f"max_position_embeddings raised to {args.max_model_len}, KV block size {block}; {conditions}, {load_average()} at the end")
    print(f"{len(bodies)} requests of one {args.steps}-step nightowl trajectory (sandbox auto), replayed in order with "
          f"max_tokens 1; prompts {len(prompts[0])} to {len(prompts[-1])} tokens; served prompt tokens match the "
          f"local chat template on {sum(a == len(p) for a, p in zip(served_prompt, prompts))} of {len(prompts)} requests\n")
    print("| what | tokens | share of prompt tokens |\n|---|---|---|")
    print(f"| prompt tokens queried (vLLM counter) | {queries:.0f} | 100% |")
    print(f"| served from the prefix cache (vLLM counter) | {hits:.0f} | {hits / queries:.1%} |")
    print(f"| ideal: all but each new suffix | {ideal} | {ideal / total:.1%} |")
    if ideal_blocks is not None:
        print(f"| ideal in whole KV blocks of {block} | {ideal_blocks} | {ideal_blocks / total:.1%} |")
    print(f"\nmeasured / ideal: {hits / ideal:.1%}" + (f"; / block-granular ideal: {hits / ideal_blocks:.1%}" if ideal_blocks else "")
          + f" (prompt tokens by local template {total}, by vLLM counter {queries:.0f})")


if __name__ == "__main__":
    main()
