"""`nightowl train --plan` and the refusal before loading (issue 20, item 2), the chunked loss it relies on, and the
estimate against the measured peak of real training runs on CPU (tests/training/memory_probe.py says how)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from training.finetune import coder_shapes

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()
QWEN25_CODER_7B = {**coder_shapes.QWEN25_CODER_7B, "torch_dtype": "bfloat16"}
QWEN3_CODER_30B_A3B = {**coder_shapes.QWEN3_CODER_30B_A3B, "torch_dtype": "bfloat16"}
TOLERANCE = 0.25


def config_only(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_plan_reads_config_json_only(tmp_path: Path) -> None:
    base = config_only(tmp_path / "qwen7b", QWEN25_CODER_7B)
    result = runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "32768"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert {"peak_gib_per_device", "devices", "fits"} <= set(plan)
    assert plan["devices"] and plan["devices"][0]["device"] in ("cpu", "cuda:0")
    assert abs(plan["parameters"] - 7_615_616_512) < 1e6 and plan["max_length"] == 32768
    assert set(plan["lora_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert plan["activations_gib"]["with_checkpointing"] < plan["activations_gib"]["without_checkpointing"] / 5
    assert plan["vllm_serves_lora"] is True  # the installed vLLM's Qwen2ForCausalLM implements SupportsLoRA
    assert os.listdir(base) == ["config.json"]

    on_gpu = json.loads(runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "32768",
                                            "--plan-gpu-gib", "80"]).stdout)
    # bf16 weights of 7.6 B parameters; checkpointing on by default on GPU; it fits an 80 GB card
    assert on_gpu["dtype"] == "bfloat16" and on_gpu["gradient_checkpointing"] is True
    assert 14 < on_gpu["gib"]["weights"] < 14.5 and on_gpu["fits"] is True and on_gpu["peak_gib_per_device"] < 60
    short = json.loads(runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "8192",
                                           "--plan-gpu-gib", "80"]).stdout)
    assert short["peak_gib_per_device"] < on_gpu["peak_gib_per_device"] and short["tokens_per_step"] == 8192
    # auto checkpointing: off where the plan without it stays well inside the GPU (a forward pass less per step)
    roomy = json.loads(runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "8192",
                                           "--plan-gpu-gib", "139"]).stdout)
    assert roomy["gradient_checkpointing"] is False and roomy["fits"] is True
    assert roomy["peak_gib_per_device"] > short["peak_gib_per_device"]
    forced = json.loads(runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "8192",
                                            "--plan-gpu-gib", "139", "--gradient-checkpointing", "on"]).stdout)
    assert forced["gradient_checkpointing"] is True and forced["peak_gib_per_device"] == short["peak_gib_per_device"]


def test_moe_plan_adapts_attention_only(tmp_path: Path) -> None:
    base = config_only(tmp_path / "moe", QWEN3_CODER_30B_A3B)
    result = runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "32768", "--plan-gpu-gib",
                                 "40"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert abs(plan["parameters"] - 30_532_122_624) < 1e6
    assert plan["lora_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    # 61 GB of bf16 weights cannot fit 40 GiB whatever the options: it says so
    assert plan["fits"] is False and plan["suggestions"] == [] and plan["gib"]["weights"] > 56


def test_fsdp_shards_what_ddp_replicates_and_is_suggested_when_it_is_what_fits(tmp_path: Path) -> None:
    base = config_only(tmp_path / "moe", QWEN3_CODER_30B_A3B)

    def planned(*extra: str) -> dict:
        result = runner.invoke(app, ["train", "--plan", "--base", str(base), "--max-length", "32768",
                                     "--plan-gpu-gib", "40", "--plan-processes", "4", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)
    ddp, fsdp = planned(), planned("--fsdp")
    assert ddp["fits"] is False and ddp["world_size"] == 4 and "each device holds a full replica" in ddp["notes"][-1]
    assert len(ddp["suggestions"]) == 1 and ddp["suggestions"][0].startswith("--fsdp (")  # the only way it fits
    # a quarter of the weights each, plus two decoder layers gathered at a time (128 experts make a layer ~1.2 GB)
    assert ddp["gib"]["weights"] / 4 + 2 < fsdp["gib"]["weights"] < ddp["gib"]["weights"] / 4 + 3
    assert fsdp["gib"]["trainable_state"] == pytest.approx(ddp["gib"]["trainable_state"] / 4, rel=0.01)
    assert fsdp["gib"]["activations"] == ddp["gib"]["activations"]  # each process still runs its own micro-batch
    assert fsdp["fits"] is True and str(fsdp["peak_gib_per_device"]) in ddp["suggestions"][0]
    assert "FSDP over 4 processes" in fsdp["notes"][-1]
    refused = runner.invoke(app, ["train", "--base", str(base), "--data", str(tmp_path), "--out", str(tmp_path / "a"),
                                  "--plan-processes", "4"])
    assert refused.exit_code == 2 and "--plan-gpu-gib and --plan-processes go with --plan" in refused.output


def test_train_refuses_in_one_line_before_loading(tmp_path: Path) -> None:
    base = config_only(tmp_path / "qwen7b", QWEN25_CODER_7B)
    # this machine (CPU: float32) cannot hold 7.6 B parameters at 32k tokens; nor could a 16 GiB budget anywhere
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "train", "--base", str(base), "--data",
                             str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--max-length", "32768",
                             "--memory-gib", "16"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: this training needs about"), result.stderr
    assert "--memory-gib allows 16 GiB" in lines[0] and "no option change fits" in lines[0]
    assert not (tmp_path / "out").exists() and result.stdout == ""


def test_refusal_names_the_options_that_fit(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A small real model at 32k tokens without checkpointing on a 1 GiB budget: the options that fit are named;
    the data is never read (it does not exist)."""
    args = ["train", "--base", str(tiny_model_dir), "--data", str(tmp_path / "missing"), "--out",
            str(tmp_path / "o"), "--max-length", "32768", "--gradient-checkpointing", "off", "--memory-gib", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "but --memory-gib allows 1 GiB; these would fit:" in result.output
    assert "--gradient-checkpointing on (" in result.output and ", or --max-length 16384 (" in result.output
    plan = json.loads(runner.invoke(app, ["train", "--plan", *args[1:]]).stdout)
    assert plan["fits"] is False and plan["suggestions"] and plan["budget_gib"] == 1
    refit = json.loads(runner.invoke(app, ["train", "--plan", *args[1:], "--gradient-checkpointing", "on"]).stdout)
    assert refit["fits"] is True and refit["gradient_checkpointing"] is True
    batched = runner.invoke(app, [*args, "--batch-size", "2"])  # a 4-D padding mask per row: 2 x 32k x 32k bytes
    assert batched.exit_code == 2 and "--max-length 8192" in batched.output


def test_chunked_loss_is_transformers_loss(tiny_model_dir: Path) -> None:
    """Same value and gradients as the model's own causal-LM loss, over several chunks, with and without the
    Trainer's token count; logits are never materialised for the whole sequence."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training.finetune.train import ChunkedLoss

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    ids = torch.randint(0, 4000, (2, 50))
    labels = ids.clone()
    labels[0, :10] = -100
    labels[1, 30:] = -100

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    reference = model(input_ids=ids, labels=labels).loss
    ref_grads = grads(reference)
    loss = ChunkedLoss(model, chunk=7)
    none = torch.zeros(0, dtype=torch.long)
    out = model(input_ids=ids, logits_to_keep=none)
    assert out.logits.shape[1] == 0
    chunked = loss(out, labels)
    assert torch.allclose(chunked, reference, rtol=1e-5)
    for a, b in zip(grads(chunked), ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    count = torch.tensor(int((labels[:, 1:] != -100).sum()) * 2)  # as if half the accumulated batch
    halved = loss(model(input_ids=ids, logits_to_keep=none), labels, num_items_in_batch=count)
    assert torch.allclose(halved, reference / 2, rtol=1e-5)
    nothing = torch.full_like(labels, -100)
    assert loss(model(input_ids=ids, logits_to_keep=none), nothing).item() == 0.0


# (kind, shape, --max-length, gradient checkpointing, batch size)
SHAPES = {
    "dense-4k": ("qwen2", dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8,
                               num_key_value_heads=2), 4096, "off", 1),
    "moe-ckpt-8k": ("qwen3_moe", dict(hidden_size=256, intermediate_size=1024, moe_intermediate_size=512,
                                      num_experts=8, num_experts_per_tok=2, num_hidden_layers=6,
                                      num_attention_heads=8, num_key_value_heads=2, head_dim=32), 8192, "on", 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_plan_within_25_percent_of_measured_peak(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from tests.training.memory_probe import build_model, long_rows

    kind, shape, length, checkpointing, batch = SHAPES[name]
    base = build_model(tmp_path / "model", tiny_model_dir, kind, **shape)
    data = long_rows(tiny_model_dir, tmp_path / "data", length)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run([sys.executable, "-m", "tests.training.memory_probe", "--base", str(base), "--data",
                             str(data), "--out", str(tmp_path / "out"), "--result", str(tmp_path / "r.json"),
                             "--max-length", str(length), "--gradient-checkpointing", checkpointing,
                             "--batch-size", str(batch)], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "r.json").read_text())
    error = measured["planned_gib"] / measured["measured_gib"] - 1
    print(f"\n[{name}: planned {measured['planned_gib']} GiB, measured {measured['measured_gib']} GiB peak "
          f"RssAnon, error {error:+.1%}; plan terms {measured['plan_terms_gib']}]")
    assert abs(error) <= TOLERANCE, measured
    shutil.rmtree(tmp_path / "model")
