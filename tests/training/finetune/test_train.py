"""Export -> train -> serve, for real: vLLM's /tokenize agrees with our training text, a LoRA fine-tune of the tiny
model lowers the loss and loads into the running vLLM server, torchrun (2 processes, gloo) gives the same loss
curve, and a SIGKILLed training resumes from its checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.training.dataset.test_render_and_mask import BARE_TOOLS, MULTI_TURN
from tests.training.helpers import TOOLS, conversation, make_generate, make_shift, trajectory
from training.dataset.mask import encode
from training.dataset.render import render, vllm_request_messages

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
DDP_RTOL = 0.01
"""Per-step loss, one process (batch 2) vs torchrun 2 x batch 1: equal data per step; only float summation order
differs, which Adam's first updates amplify (zero-initialised LoRA B), so the curves agree to ~0.2%, not bits."""


def cli(*args: str, timeout: float = 600, env: dict | None = None, launcher: list[str] | None = None
        ) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + ["-m", "orchestrator.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture(scope="module")
def dataset(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shift's and a generation's outputs, exported with the tiny model's tokenizer."""
    root = tmp_path_factory.mktemp("export")
    shift = make_shift(root / "shift", {f"task-{i}": [trajectory(conversation(f"fix bug {i}", turns=3,
                                                                              reasoning="Check the tests"), "x")]
                                        for i in range(10)})
    gen = make_generate(root / "gen", [{"id": f"s{i}", "recall": 1.0, "t1": trajectory(conversation(f"s{i} t1"), "a"),
                                        "t2": trajectory(conversation(f"s{i} t2"), "b")} for i in range(5)])
    result = cli("export", str(shift), str(gen), "--out", str(root / "ds"), "--tokenizer", str(tiny_model_dir),
                 "--max-tokens", "3000", "--min-recall", "0.5", "--val-share", "0.2")
    assert result.returncode == 0, result.stderr
    assert "train +" in result.stdout
    return root / "ds"


def server_tokens(server, messages: list[dict], tools: list[dict] | None, generation_prompt: bool) -> list[int]:
    reply = httpx.post(server.root_url + "/tokenize", timeout=30, json={
        "model": server.served_model_name, "messages": vllm_request_messages(messages), "tools": tools,
        "add_generation_prompt": generation_prompt})
    assert reply.status_code == 200, reply.text
    return reply.json()["tokens"]


def test_training_text_is_what_vllm_renders(vllm_server, tiny_model_dir: Path, dataset: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [json.loads(line) for line in (dataset / "train.jsonl").read_text().splitlines()]
    cases = [(MULTI_TURN, TOOLS + BARE_TOOLS), (conversation("plain", turns=2), None)] + [
        (r["messages"], r["tools"]) for r in rows[:3]]
    for messages, tools in cases:
        ours = encode(tok, messages, tools).input_ids
        assert server_tokens(vllm_server, messages, tools, generation_prompt=False) == ours
        # every request the agent made (history + generation prompt) is a prefix of the training text
        for k, m in enumerate(messages):
            if m["role"] == "assistant":
                prompt = server_tokens(vllm_server, messages[:k], tools, generation_prompt=True)
                assert ours[:len(prompt)] == prompt
                assert tok.encode(render(tok, messages[:k], tools, add_generation_prompt=True),
                                  add_special_tokens=False) == prompt


def adapter_answer(client: openai.OpenAI, model: str, messages: list[dict]) -> tuple[str, dict[str, float]]:
    """Greedy text and the first generated position's top log-probabilities."""
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0.0,
                                           logprobs=True, top_logprobs=5)
    first = reply.choices[0].logprobs.content[0]
    return reply.choices[0].message.content or "", {t.token: t.logprob for t in first.top_logprobs}


def test_lora_fine_tune_serves_from_vllm(vllm_server, tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    result = cli("train", "--base", str(tiny_model_dir), "--data", str(dataset), "--out", str(adapter),
                 "--epochs", "3", "--rank", "8", "--lr", "3e-3", "--batch-size", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mask check passed" in result.stderr and "lora fine-tune done" in result.stdout
    report = json.loads((adapter / "training_report.json").read_text())
    losses = [p["loss"] for p in report["loss"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses
    assert report["eval_loss"][-1]["eval_loss"] < report["eval_loss"][0]["eval_loss"]
    assert report["mask"]["train"]["supervised_end_tokens"] == report["mask"]["train"]["assistant_turns"] > 0
    assert 0 < report["mask"]["train"]["share"] < 1 and report["tokens_per_second"] > 0
    assert report["batching"] == "length-grouped padded batches" and report["dtype"] == "float32"
    assert set(report["versions"]) == {"nightowl", "torch", "transformers", "peft"}

    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "lm_head" in k or "embed" in k]
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= {
        k.split(".")[-3] for k in keys}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and not config.get("modules_to_save")
    assert not list(adapter.glob("tokenizer*")) and not (adapter / "checkpoints").exists()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)

    client = openai.OpenAI(base_url=vllm_server.base_url, api_key="EMPTY", max_retries=0)
    prompt = [{"role": "system", "content": "You are a careful engineer."},
              {"role": "user", "content": "<task>\nfix bug 3\n</task>"}]
    base_answer, base_top = adapter_answer(client, vllm_server.served_model_name, prompt)
    loaded = cli("adapter", "load", "trained-1", str(adapter), "--base-url", vllm_server.base_url)
    assert loaded.returncode == 0, loaded.stderr
    try:
        assert "trained-1" in [m["id"] for m in httpx.get(vllm_server.base_url + "/models").json()["data"]]
        tuned_answer, tuned_top = adapter_answer(client, "trained-1", prompt)
        # random weights make greedy text sticky (often a run of newlines either way); the distribution moves
        shift = max(abs(tuned_top.get(t, -100.0) - lp) for t, lp in base_top.items())
        print(f"\n[base: {base_answer!r} {base_top}\n tuned: {tuned_answer!r} {tuned_top}]")
        assert tuned_answer != base_answer or shift > 0.05, (base_top, tuned_top)
    finally:
        unloaded = cli("adapter", "unload", "trained-1", "--base-url", vllm_server.base_url)
    assert unloaded.returncode == 0, unloaded.stderr
    missing = cli("adapter", "load", "x", str(tmp_path / "nope"), "--base-url", vllm_server.base_url)
    assert missing.returncode == 2 and "no adapter_config.json" in missing.stderr and "Traceback" not in missing.stderr


def losses(out: Path) -> list[float]:
    return [p["loss"] for p in json.loads((out / "training_report.json").read_text())["loss"]]


def test_torchrun_two_processes_match_one(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    common = ["--base", str(tiny_model_dir), "--data", str(dataset), "--max-steps", "6", "--rank", "8",
              "--lr", "3e-3"]
    one = cli("train", *common, "--out", str(tmp_path / "one"), "--batch-size", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli("train", *common, "--out", str(tmp_path / "two"), "--batch-size", "1",
              launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29533"])
    assert two.returncode == 0, two.stderr[-3000:]
    report = json.loads((tmp_path / "two" / "training_report.json").read_text())
    assert report["world_size"] == 2
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=DDP_RTOL)
    print(f"\n[1 process: {[round(x, 4) for x in a]}\n 2 processes: {[round(x, 4) for x in b]}]")


def supervised_loss(base: Path, adapter: Path | None, dataset: Path, rows: int = 4) -> float:
    """Mean loss on the supervised tokens of the first `rows` training rows, with `adapter` on `base` (None: base)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    losses = []
    for line in (dataset / "train.jsonl").read_text().splitlines()[:rows]:
        row = json.loads(line)
        encoded = encode(tokenizer, row["messages"], row.get("tools"))
        with torch.no_grad():
            out = model(input_ids=torch.tensor([encoded.input_ids]), labels=torch.tensor([encoded.labels]))
        losses.append(float(out.loss))
    return sum(losses) / len(losses)


def test_fsdp_over_two_processes_trains_as_ddp_does(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    common = ["--base", str(tiny_model_dir), "--data", str(dataset), "--max-steps", "6", "--rank", "8",
              "--lr", "3e-3", "--batch-size", "1"]

    def torchrun(port: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    ddp = cli("train", *common, "--out", str(tmp_path / "ddp"), launcher=torchrun("29534"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # FSDP with its own activation checkpointing (what --gradient-checkpointing on becomes under FSDP)
    fsdp = cli("train", *common, "--fsdp", "--gradient-checkpointing", "on", "--out", str(tmp_path / "fsdp"),
               launcher=torchrun("29535"))
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    assert "FSDP over 2 processes: weights, gradients and optimizer state sharded" in fsdp.stderr
    report = json.loads((tmp_path / "fsdp" / "training_report.json").read_text())
    assert report["world_size"] == 2 and report["options"]["fsdp"] is True
    a, b = losses(tmp_path / "ddp"), losses(tmp_path / "fsdp")
    assert len(a) == len(b) == 6 and b == pytest.approx(a, rel=DDP_RTOL)
    # the saved adapter is whole (gathered from the shards): it lowers the loss as much as DDP's does
    before = supervised_loss(tiny_model_dir, None, dataset)
    after_ddp = supervised_loss(tiny_model_dir, tmp_path / "ddp", dataset)
    after_fsdp = supervised_loss(tiny_model_dir, tmp_path / "fsdp", dataset)
    print(f"\n[DDP {[round(x, 4) for x in a]}\n FSDP {[round(x, 4) for x in b]}\n loss on 4 rows: base {before:.4f}, "
          f"DDP adapter {after_ddp:.4f}, FSDP adapter {after_fsdp:.4f}]")
    assert after_fsdp < before - 0.05 and after_fsdp == pytest.approx(after_ddp, rel=DDP_RTOL)
    alone = cli("train", *common, "--fsdp", "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0 and "--fsdp with one process: nothing to shard" in alone.stderr, alone.stderr[-2000:]


def test_killed_training_resumes_from_its_checkpoint(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    args = ["train", "--base", str(tiny_model_dir), "--data", str(dataset), "--out", str(out), "--epochs", "4",
            "--rank", "8", "--save-steps", "3", "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 300
    try:
        while not (out / "checkpoints" / "checkpoint-6" / "trainer_state.json").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "adapter_config.json").exists()
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    report = json.loads((out / "training_report.json").read_text())
    start = int(Path(report["resumed_from"]).name.rpartition("-")[2])
    assert start >= 6
    steps = [p["step"] for p in report["loss"]]
    assert steps[0] <= start < steps[-1] == report["steps"]
    assert [s for s in steps if s > start] == list(range(start + 1, report["steps"] + 1))


def test_full_fine_tune_writes_a_servable_model_directory(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    result = cli("train", "--base", str(tiny_model_dir), "--data", str(dataset), "--out", str(out), "--full",
                 "--max-steps", "4", "--batch-size", "2", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "training_report.json").read_text())
    assert report["mode"] == "full" and report["steps"] == 4
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
    from transformers import AutoModelForCausalLM

    tuned, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert len(tuned.state_dict()) == len(base.state_dict())
    assert not all((tuned.state_dict()[k] == v).all() for k, v in base.state_dict().items())
