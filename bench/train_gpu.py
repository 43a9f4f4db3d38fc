"""`nightowl train` on a GPU at the shapes of real coders: tokens/s, MFU and peak memory at 8k and 32k tokens, with
the memory plan's estimate beside the measured peak. One prepared script: nothing is downloaded. Each model is
built from its config alone with random weights (Qwen2.5-Coder-7B, and a Qwen3-Coder-30B-A3B-like MoE with as
many of its 48 layers as fit the device beside the activations), and trained through the real `nightowl train`
path (training.finetune.train.train: peft LoRA on the modules vLLM can load, bf16, gradient checkpointing, SDPA, chunked
cross-entropy) on synthetic rows of exactly the measured length.

    python bench/train_gpu.py                # on a GPU: both shapes at 8k and 32k (sized for < 10 minutes on one
                                             # H200 by arithmetic; not yet run on a GPU)
    python bench/train_gpu.py --cpu-smoke    # anywhere: the same path at tiny shapes on CPU, under a minute

MFU = model FLOPs per token x tokens/s / the device's peak. Model FLOPs per token for LoRA: 4 x the active
matmul parameters (forward, plus the backward's input gradients; frozen weights get no weight gradients), the
output head counted only for supervised tokens (train.py applies it to those alone), plus causal attention
6 x layers x q-width x length / 2 x 2. Gradient checkpointing's recomputation is not model FLOPs. The peak is
the nominal dense bf16 figure of the device (H100/H200 989 TFLOP/s) and, beside it, a measured large-matmul peak.
Peak memory: on GPU torch's max_memory_allocated (live tensors), compared with the plan less its CUDA-context
allowance; on CPU the process's peak anonymous resident memory (sampled; tests/training/memory_probe.py), compared
with the whole plan.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.finetune.coder_shapes import QWEN3_CODER_30B_A3B, QWEN25_CODER_7B  # noqa: E402

# --cpu-smoke: the same families and ratios (GQA, MoE top-k of many experts, a large vocabulary), tiny widths
SMOKE_DENSE = {**QWEN25_CODER_7B, "hidden_size": 224, "intermediate_size": 1184, "num_hidden_layers": 2,
               "num_attention_heads": 7, "num_key_value_heads": 1, "vocab_size": 8192}
SMOKE_MOE = {**QWEN3_CODER_30B_A3B, "hidden_size": 128, "moe_intermediate_size": 48, "num_experts": 16,
             "num_experts_per_tok": 4, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
             "head_dim": 32, "vocab_size": 8192}
NOMINAL_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                       "L4": 121.0, "A10G": 125.0, "RTX 4090": 165.0, "B200": 2250.0, "GH200": 989.0}


def nominal_tflops(name: str) -> float | None:
    for key in sorted(NOMINAL_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return NOMINAL_BF16_TFLOPS[key]
    return None


def measured_matmul_tflops(device: str) -> float:
    """The best of a few large square matmuls in the training dtype: what this device really sustains."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * n ** 3 / best / 1e12


def active_matmul_parameters(config: dict[str, Any]) -> tuple[float, float]:
    """(parameters a token passes through in the decoder's matmuls, the output head's), from the config."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or h // heads
    attention = h * hd * (2 * heads + 2 * kv)
    if config.get("num_experts"):
        mlp = config["num_experts_per_tok"] * 3 * h * config["moe_intermediate_size"] + h * config["num_experts"]
    else:
        mlp = 3 * h * config["intermediate_size"]
    return layers * (attention + mlp), h * config["vocab_size"]


def flops_per_token(config: dict[str, Any], length: int, supervised_share: float, full: bool = False) -> float:
    decoder, head = active_matmul_parameters(config)
    per_param = 6 if full else 4
    heads = config["num_attention_heads"]
    q_width = heads * (config.get("head_dim") or config["hidden_size"] // heads)
    attention = 6 * config["num_hidden_layers"] * q_width * length  # 3 x (QK^T + AV: 2 x 2 x q x length / 2)
    return per_param * decoder + per_param * head * supervised_share + attention


def build_base(directory: Path, config: dict[str, Any], tokenizer: Any) -> Path:
    """A base directory holding the config (what the plan reads) and a tokenizer; no weights."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    tokenizer.save_pretrained(directory)
    return directory


def random_model(config: dict[str, Any], device: str) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model


def fit_layers(config: dict[str, Any], base_dir: Path, length: int, budget_gib: float) -> int:
    """The most layers of `config` whose plan at `length` fits `budget_gib` (the MoE "scaled to fit")."""
    from training.finetune.memory_plan import Settings, plan

    layers = config["num_hidden_layers"]
    while layers > 1:
        (base_dir / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}))
        estimate = plan(str(base_dir), Settings(max_length=length, device="cuda", gradient_checkpointing=True),
                        devices=[])
        if estimate.peak_gib_per_device <= budget_gib:
            return layers
        layers -= 4 if layers > 8 else 1
    return layers


def run_one(label: str, config: dict[str, Any], length: int, steps: int, device: str, tokenizer: Any,
            work: Path, peak_tflops: float | None, matmul_tflops: float) -> dict[str, Any]:
    import torch

    from tests.training.memory_probe import Sampler, long_rows, rss_anon
    from training.finetune.memory_plan import plan
    from training.finetune.train import TrainOptions, plan_settings, train

    base = build_base(work / f"base-{label}-{length}", config, tokenizer)
    data = long_rows(base, work / f"data-{length}", length, rows=steps + 1)
    opt = TrainOptions(base=str(base), data=data, out=work / f"out-{label}-{length}", max_length=length,
                       max_steps=steps, save_steps=10_000, rank=16, ignore_plan=True)
    estimate = plan(str(base), plan_settings(opt, device))
    started = time.perf_counter()
    model = random_model(config, device)
    built_s = time.perf_counter() - started
    sampler = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        sampler = Sampler()
        sampler.peak = rss_anon()
        sampler.start()
    report = train(opt, log=lambda line: None, model=model)
    if sampler:
        sampler.stop.set()
        sampler.join()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else sampler.peak / 2**30
    timed = report.step_times[1:] or report.step_times  # the first step warms kernels and allocators up
    seconds = sum(s["seconds"] for s in timed)
    tokens = sum(s["tokens"] for s in timed)
    tps = tokens / seconds if seconds else 0.0
    share = report.mask["train"]["share"]
    fpt = flops_per_token(config, length, share)
    # GPU: the allocator's peak of live tensors, against the plan without its CUDA-context allowance; CPU: the
    # process's peak anonymous memory, against the whole plan (its CPU term is the process itself)
    planned = estimate.peak_gib_per_device - (estimate.gib["overhead"] if device == "cuda" else 0.0)
    achieved = fpt * tps / 1e12
    row = {"shape": label, "layers": config["num_hidden_layers"], "length": length, "steps_timed": len(timed),
            "tokens_per_s": round(tps, 1), "model_tflops": round(achieved, 5),
            "mfu_nominal": round(achieved / peak_tflops, 4) if peak_tflops else None,
            "mfu_measured_matmul": round(achieved / matmul_tflops, 4),
            "peak_gib": round(peak, 2), "plan_gib": round(planned, 2),
            "plan_error": round(planned / peak - 1, 3), "supervised_share": round(share, 3),
            "build_s": round(built_s, 1), "attention": report.attention, "dtype": report.dtype,
            "checkpointing": report.gradient_checkpointing, "lora_modules": report.lora_modules}
    del model, report
    gc.collect()  # the Trainer and the peft wrapper hold the model in reference cycles
    if device == "cuda":
        torch.cuda.empty_cache()
    shutil.rmtree(work / f"out-{label}-{length}", ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="Tiny shapes on CPU (no GPU needed).")
    parser.add_argument("--lengths", default=None, help="Comma-separated tokens per row (default 8192,32768; "
                        "--cpu-smoke 2048,8192).")
    parser.add_argument("--steps", type=int, default=None, help="Optimizer steps per run (the first is not timed).")
    parser.add_argument("--shapes", default="dense,moe", help="dense, moe or both.")
    parser.add_argument("--peak-tflops", type=float, default=None, help="The device's peak (default: by name).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    if args.cpu_smoke and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        # freed tensors go back to the OS, so the resident peak is the tensors' (see tests/training/memory_probe.py)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})

    import torch

    from training.finetune.tiny_model import default_corpus, train_tokenizer

    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no GPU here: run with --cpu-smoke for the CPU numbers")
    lengths = [int(x) for x in (args.lengths or ("2048,8192" if args.cpu_smoke else "8192,32768")).split(",")]
    steps = args.steps or (3 if args.cpu_smoke else 4)
    name = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine())
    peak_tflops = args.peak_tflops or (nominal_tflops(name) if device == "cuda" else None)
    started = time.perf_counter()
    matmul = measured_matmul_tflops(device)
    tokenizer = train_tokenizer(default_corpus())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shapes = []
        if "dense" in args.shapes:
            shapes.append(("Qwen2.5-Coder-7B" if device == "cuda" else "7B-like tiny",
                           SMOKE_DENSE if args.cpu_smoke else QWEN25_CODER_7B))
        if "moe" in args.shapes:
            moe = SMOKE_MOE if args.cpu_smoke else dict(QWEN3_CODER_30B_A3B)
            if device == "cuda":
                free = torch.cuda.mem_get_info()[0] / 2**30
                (work / "fit").mkdir()
                tokenizer.save_pretrained(work / "fit")
                moe["num_hidden_layers"] = fit_layers(moe, work / "fit", max(lengths), 0.85 * free)
            shapes.append((f"Qwen3-Coder-30B-A3B-like ({moe['num_hidden_layers']}/48 layers)" if device == "cuda"
                           else "30B-A3B-like tiny", moe))
        for label, config in shapes:
            for length in lengths:
                row = run_one(label.split(" ")[0], config, length, steps, device, tokenizer, work, peak_tflops, matmul)
                row["shape"] = label
                rows.append(row)
                print(json.dumps(row), flush=True)
    total = time.perf_counter() - started
    cores = os.cpu_count()
    print(f"\n`python bench/train_gpu.py{' --cpu-smoke' if args.cpu_smoke else ''}` on {name} "
          f"({'CPU, ' + str(cores) + ' cores' if device == 'cpu' else device}), torch {torch.__version__}, "
          f"measured matmul peak {matmul:.3g} TFLOP/s"
          + (f", nominal {peak_tflops:g} TFLOP/s" if peak_tflops else "") + f"; {total:.0f} s in all; LoRA r16, "
          f"batch 1, {steps} steps per run of which the first is not timed")
    print("\n| shape | tokens/row | tokens/s | model TFLOP/s | MFU (nominal) | MFU (matmul peak) | peak GiB | "
          "plan GiB | plan error |")  # noqa: E501
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        nominal = f"{r['mfu_nominal']:.1%}" if r["mfu_nominal"] is not None else "-"
        print(f"| {r['shape']} | {r['length']} | {r['tokens_per_s']:.0f} | {r['model_tflops']:.3g} | {nominal} | "
              f"{r['mfu_measured_matmul']:.1%} | {r['peak_gib']:.2f} | {r['plan_gib']:.2f} | {r['plan_error']:+.0%} |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows, "seconds": total}, indent=1) + "\n")


if __name__ == "__main__":
    main()
