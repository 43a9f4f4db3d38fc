"""Benchmark: export rows/s on synthesized trajectories, and training tokens/s of `nightowl train` against a plain
padded transformers.Trainer loop on the same rows in the same run (CPU; tiny model and a ~100M-parameter
random-init Qwen2-shaped model). Prints numbers and conditions; run it yourself, nothing here is canned.

    PYTHONPATH=. python bench/train_bench.py [--trajectories 10000] [--skip-export] [--skip-train]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.training.helpers import call, trajectory  # noqa: E402
from training.dataset.export import ExportOptions, export  # noqa: E402

WORDS = "def return self value index error path config parse buffer token cache test assert".split()


def synthetic_messages(rng: random.Random, turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a careful engineer."},
                {"role": "user", "content": "<task>\n" + " ".join(rng.choices(WORDS, k=40)) + "\n</task>"}]
    for i in range(turns):
        last = i == turns - 1
        messages.append({"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(5, 40))),
                         "reasoning_content": " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
                         "tool_calls": [call(f"c{i}", "submit", "{}") if last else
                                        call(f"c{i}", "bash", json.dumps({"command": f"grep -rn {rng.choice(WORDS)} ."}))]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}",
                         "content": "\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(rng.randint(1, 30)))})
    return messages


def synthesize_shift(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        run = root / "runs" / f"task-{i // 2}.{i % 2 + 1}"
        run.mkdir(parents=True)
        traj = trajectory(synthetic_messages(rng, rng.randint(2, 12)), run.name)
        (run / "trajectory.json").write_text(json.dumps(traj), encoding="utf-8")


def bench_export(n: int, tokenizer: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        synthesize_shift(root / "shift", n)
        size = sum(p.stat().st_size for p in (root / "shift" / "runs").rglob("trajectory.json"))
        print(f"synthesized {n} trajectories ({size / 2**20:.1f} MiB) in {time.perf_counter() - started:.1f} s")
        for label, kw in (("no tokenizer", {}),
                          ("tokenizer + --max-tokens 2048", {"tokenizer": tokenizer, "max_tokens": 2048})):
            if "tokenizer" in kw and not tokenizer:
                continue
            report = export(ExportOptions(sources=[root / "shift"], out=root / f"ds-{len(kw)}", val_share=0.1, **kw))
            rows = report.rows["train"] + report.rows["val"]
            print(f"export ({label}): {n} trajectories -> {rows} rows, truncated {report.truncated}, dropped "
                  f"{sum(report.dropped.values())}, {report.seconds:.2f} s, {n / report.seconds:.0f} trajectories/s, "
                  f"{rows / report.seconds:.0f} rows/s")


def build_100m(tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=768, intermediate_size=2560, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def plain_trainer_tokens_per_s(model_dir: Path, data: Path, batch_size: int, rank: int, out: Path) -> tuple[float, int]:
    """The baseline: the same rows and LoRA, a random sampler, padding to the longest row of each batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from training.finetune.train import PaddedCollator, Rows, encode_rows, linear_projections, read_rows

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows, _ = encode_rows(tok, read_rows(data / "train.jsonl"), 32768)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=linear_projections(model),
                                             task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=batch_size,
                             learning_rate=2e-4, report_to=[], save_strategy="no", use_cpu=True, logging_steps=1,
                             remove_unused_columns=False, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(rows), data_collator=PaddedCollator(tok.pad_token_id))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = sum(len(r.input_ids) for r in rows)
    return tokens / seconds, tokens


def parameter_count(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())


def padding_share(lengths: list[int], batch_size: int, grouped: bool, seed: int = 0) -> float:
    """Share of padding in the batches each sampler makes from these rows (one epoch)."""
    import torch
    from torch.utils.data import RandomSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator) if grouped
                 else RandomSampler(range(len(lengths)), generator=generator))
    batches = [[lengths[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    padded = sum(max(b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def bench_train(name: str, model_dir: Path, data: Path, batch_size: int, rank: int, work: Path, reps: int) -> None:
    from training.finetune.train import TrainOptions, train

    label = f"{name} ({parameter_count(model_dir) / 1e6:.1f}M params)"

    ours_runs, plain_runs = [], []
    for rep in range(reps):  # alternate, so that load from other processes hits both alike
        report = train(TrainOptions(base=str(model_dir), data=data, out=work / f"{name}-nightowl-{rep}",
                                    batch_size=batch_size, rank=rank, save_steps=10_000), log=lambda line: None)
        ours_runs.append(report.tokens_per_second)
        plain, tokens = plain_trainer_tokens_per_s(model_dir, data, batch_size, rank, work / f"{name}-plain-{rep}")
        plain_runs.append(plain)
    ours, plain = max(ours_runs), max(plain_runs)
    from transformers import AutoTokenizer

    from training.finetune.train import encode_rows, read_rows

    lengths = [len(r.input_ids) for r in encode_rows(AutoTokenizer.from_pretrained(model_dir),
                                                      read_rows(data / "train.jsonl"), 32768)[0]]
    shares = [sum(padding_share(lengths, batch_size, grouped, seed) for seed in range(20)) / 20
              for grouped in (True, False)]
    print(f"train {label}: {report.rows['train']} rows, {tokens} tokens, batch {batch_size}, LoRA r{rank}, "
          f"{report.dtype}, {report.batching}: nightowl train {ours:.0f} tokens/s vs plain padded Trainer "
          f"{plain:.0f} tokens/s ({ours / plain:.2f}x) (best of {reps} alternating runs; all: nightowl "
          f"{[round(x) for x in ours_runs]}, plain {[round(x) for x in plain_runs]}); padding in batches (mean of 20 shuffles): length-grouped "
          f"{shares[0]:.1%}, random {shares[1]:.1%}; supervised share {report.mask['train']['share']:.1%}")


def make_dataset(tokenizer_dir: Path, work: Path, n: int, seed: int) -> Path:
    shift = work / f"shift-{n}"
    synthesize_shift(shift, n, seed)
    out = work / f"ds-{n}"
    export(ExportOptions(sources=[shift], out=out, val_share=0.0, tokenizer=str(tokenizer_dir), max_tokens=1536))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trajectories", type=int, default=10_000)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--big-rows", type=int, default=16, help="0 skips the ~100M model")
    parser.add_argument("--reps", type=int, default=3, help="alternating runs per method (tiny model)")
    args = parser.parse_args()
    import torch

    from training.finetune.tiny_model import build_tiny_model

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = build_tiny_model(work / "tiny")
        if not args.skip_export:
            bench_export(args.trajectories, str(tiny))
        if not args.skip_train:
            bench_train("tiny", tiny, make_dataset(tiny, work, 64, 1), batch_size=4, rank=8, work=work,
                        reps=args.reps)
            if not args.big_rows:
                return
            big = build_100m(tiny, work / "qwen2-100m")
            bench_train("qwen2-shaped random-init", big, make_dataset(tiny, work, args.big_rows, 2), batch_size=4,
                        rank=16, work=work, reps=1)


if __name__ == "__main__":
    main()
