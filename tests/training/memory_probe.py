"""Measured peak memory of a real `nightowl train` run on CPU, for checking the memory plan (training/finetune/memory_plan.py).

How it measures: `train()` runs in a fresh Python process while a thread samples the process's anonymous resident
memory (RssAnon in /proc/self/status: the heap and every tensor, not the memory-mapped checkpoint file or the
shared libraries' code) every millisecond; the measured peak is the highest sample, the whole process included
(the plan's CPU term for the process itself covers the interpreter and libraries). Run it with glibc's
MALLOC_MMAP_THRESHOLD_ fixed (the caller sets it), so that freed tensors go back to the OS as they do from a GPU
allocator's allocated-bytes count; with glibc's adaptive default, freed blocks stay resident and RSS overstates
the live tensors (by ~30% at these shapes). A tensor alive for less than a millisecond can be missed; the peak
tensors of a training step live far longer at these shapes.

    python -m tests.training.memory_probe --base DIR --data DS --out OUT --result R.json [-- train options]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

KIB = 1024
WORDS = "def return self value index error path config parse buffer token cache test assert".split()


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * KIB
    raise RuntimeError("no RssAnon in /proc/self/status")


class Sampler(threading.Thread):
    def __init__(self, period_s: float = 0.001):
        super().__init__(daemon=True)
        self.period_s, self.peak, self.stop = period_s, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.period_s)


def build_model(directory: Path, tokenizer_dir: Path, kind: str, **shape: Any) -> Path:
    """A random-weight model of `kind` (qwen2 or qwen3_moe) with the tiny model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(vocab_size=len(tok), max_position_embeddings=65536, tie_word_embeddings=True,
                  bos_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                  eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), dtype="float32")
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                             "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM)}[kind]
    torch.manual_seed(0)
    model = model_cls(config_cls(**common, **shape)).to(torch.float32)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def long_rows(tokenizer_dir: Path, out: Path, tokens: int, rows: int = 4, seed: int = 0) -> Path:
    """A dataset whose rows are conversations of many short turns, longer than `tokens` (cut to fit by train)."""
    from transformers import AutoTokenizer

    from training.dataset.mask import encode

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in range(rows):
        messages = [{"role": "system", "content": "You are a careful engineer."},
                    {"role": "user", "content": f"task {r}: " + " ".join(rng.choices(WORDS, k=30))}]
        while True:
            messages += [{"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(8, 20)))},
                         {"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(8, 20)))}]
            if len(messages) % 40 == 0 and len(encode(tok, messages + [messages[-2]], None).input_ids) > tokens:
                break
        messages.append({"role": "assistant", "content": "done"})
        lines.append(json.dumps({"messages": messages, "tools": None}))
    (out / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", choices=["on", "off"], default="off")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)

    import peft  # noqa: F401  (imported before the baseline, like torch and transformers)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from training.finetune.memory_plan import plan
    from training.finetune.train import TrainOptions, plan_settings, train

    opt = TrainOptions(base=args.base, data=args.data, out=args.out, max_length=args.max_length,
                       batch_size=args.batch_size, max_steps=args.max_steps, save_steps=1000, full=args.full,
                       gradient_checkpointing=args.gradient_checkpointing == "on", ignore_plan=True)
    estimate = plan(args.base, plan_settings(opt, "cpu"))
    sampler = Sampler()
    baseline = rss_anon()
    sampler.peak = baseline
    sampler.start()
    started = time.monotonic()
    report = train(opt, log=lambda line: None)
    sampler.stop.set()
    sampler.join()
    args.result.write_text(json.dumps({
        "planned_gib": estimate.peak_gib_per_device, "plan_terms_gib": estimate.gib,
        "measured_gib": round(sampler.peak / 2**30, 3), "before_train_gib": round(baseline / 2**30, 3),
        "tokens_per_step": (report.tokens_trained or 0) / max(1, report.steps),
        "seconds": round(time.monotonic() - started, 1), "parameters": estimate.parameters,
    }, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
