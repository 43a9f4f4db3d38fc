"""`nightowl train`: a LoRA (or full) fine-tune on an exported dataset, loss on assistant tokens only.

transformers' Trainer + peft (TRL is not used: the mask and the rendering are ours, so that they match vLLM).
Several GPUs or machines: launch the same command under `torchrun` or `accelerate launch` (DDP, or FSDP via an
accelerate config); the Trainer picks the distributed set-up from the environment. Re-running the same command
with the same --out resumes from the newest complete checkpoint in OUT/checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandbox.errors import UserError

from training.export import load_tokenizer, nightowl_version, read_jsonl
from training.mask import IGNORE, Encoded, MaskReport, cut_to_length, encode, verify_masks
from training.render import end_token

CHECKPOINTS = "checkpoints"
REPORT = "training_report.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "chat_template.jinja", "added_tokens.json", "generation_config.json")
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")


class TrainOptions(BaseModel):
    base: str
    data: Path
    out: Path
    epochs: float = Field(default=1.0, gt=0)
    lr: float | None = Field(default=None, gt=0)
    """Default 2e-4 for LoRA, 1e-5 for a full fine-tune."""
    rank: int = Field(default=16, gt=0)
    alpha: int | None = Field(default=None, gt=0)
    """Default 2 * rank."""
    max_length: int = Field(default=32768, gt=0)
    full: bool = False
    batch_size: int = Field(default=1, gt=0)
    """Rows per device per step."""
    grad_accum: int = Field(default=1, gt=0)
    packing: Literal["auto", "on", "off"] = "auto"
    """auto: padding-free packing where the attention respects sequence boundaries (flash-attention varlen),
    length-grouped padded batches otherwise (CPU)."""
    save_steps: int = Field(default=50, gt=0)
    eval_steps: int | None = Field(default=None, gt=0)
    """Default: evaluate at the end of each epoch."""
    max_steps: int = -1
    seed: int = 0
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    gradient_checkpointing: bool | None = None
    """Default: on GPU, off on CPU."""


class TrainingError(UserError, ValueError):
    """Training cannot start: bad data, a finished output directory, a mask problem."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return read_jsonl(path)
    except json.JSONDecodeError as e:
        raise TrainingError(f"{path} line {e.lineno} is not JSON: give a dataset from `nightowl export`") from None


def validate(opt: TrainOptions) -> None:
    train = opt.data / "train.jsonl"
    if not train.is_file():
        raise TrainingError(f"{train} does not exist: give --data a directory written by `nightowl export`")
    if (opt.out / "adapter_config.json").exists() or (opt.out / "config.json").exists():
        raise TrainingError(f"{opt.out} already holds a trained result; give a new --out directory")
    if opt.out.exists() and any(p.name not in (CHECKPOINTS, REPORT) for p in opt.out.iterdir()):
        raise TrainingError(f"{opt.out} is not empty and is not an unfinished `nightowl train` output; "
                            "give a new --out directory")


def encode_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> tuple[list[Encoded], int]:
    end_id = tokenizer.convert_tokens_to_ids(end_token(tokenizer))
    encoded, dropped = [], 0
    for row in rows:
        cut = cut_to_length(encode(tokenizer, row["messages"], row.get("tools")), max_length, end_id)
        if cut is None:
            dropped += 1
        else:
            encoded.append(cut)
    return encoded, dropped


class Rows:
    """A map-style dataset of encoded rows; `input_ids` lengths drive the length-grouped sampler."""

    def __init__(self, rows: list[Encoded]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i].input_ids, "labels": self.rows[i].labels}


class PaddedCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features]
        labels = [f["labels"] + [IGNORE] * (width - len(f["labels"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(opt: TrainOptions, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(opt.base, dtype=dtype)
    # A KV cache during training is waste, and its presence turns off transformers' packed-sequence masks:
    # packed rows would attend to each other.
    model.config.use_cache = False
    if opt.full:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=opt.rank, lora_alpha=opt.alpha or 2 * opt.rank, lora_dropout=0.0, bias="none",
                        target_modules=linear_projections(model), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def linear_projections(model: Any) -> list[str]:
    """Every linear layer's short name (q_proj, ..., down_proj), never lm_head: vLLM matches on these names."""
    import torch

    output = model.get_output_embeddings()
    return sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not output})


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint whose trainer state (written last) is complete; a kill mid-save leaves none."""
    if not directory.is_dir():
        return None
    done = []
    for path in directory.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            done.append((int(path.name.rpartition("-")[2]), path))
        except (OSError, ValueError):
            continue
    return max(done)[1] if done else None


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"nightowl": nightowl_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}


def adapter_problems(out: Path) -> list[str]:
    """vLLM refuses adapters that carry lm_head or embedding weights."""
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        return [k for k in f.keys() if "lm_head" in k or "embed_tokens" in k]


def copy_tokenizer(base: str, out: Path) -> None:
    """Byte copies of the base's tokenizer files (a re-saved tokenizer_config.json can break serving)."""
    for name in TOKENIZER_FILES:
        source = Path(base) / name
        if source.is_file():
            shutil.copyfile(source, out / name)


def empty_dataset_message(data: Path, max_length: int, too_long: int) -> str:
    """Why there is nothing to train on: an empty export (and what it was exported from), or rows too long."""
    if too_long:
        return f"no training row fits --max-length {max_length} ({too_long} too long)"
    try:
        card = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
        origin = (f"exported from {', '.join(card.get('sources') or ['?'])}: {card.get('candidates', '?')} "
                  f"trajectories, dropped {card.get('dropped') or 'none'}")
    except (OSError, ValueError):
        origin = "no dataset.json beside it"
    return f"{data / 'train.jsonl'} holds no rows, nothing to train on ({origin})"


def train(opt: TrainOptions, log: Any = print) -> dict[str, Any]:
    from transformers import DataCollatorWithFlattening, TrainerCallback, TrainingArguments

    rank0 = int(os.environ.get("RANK", "0")) == 0
    device = pick_device()
    estimate, targets = check_plan(opt, device, log if rank0 else None)
    validate(opt)
    tokenizer = load_tokenizer(opt.base)
    train_rows, dropped = encode_rows(tokenizer, read_rows(opt.data / "train.jsonl"), opt.max_length)
    val_path = opt.data / "val.jsonl"
    val_rows, val_dropped = encode_rows(tokenizer, read_rows(val_path) if val_path.is_file() else [], opt.max_length)
    if not train_rows:
        raise TrainingError(empty_dataset_message(opt.data, opt.max_length, dropped))
    mask = verify_masks(tokenizer, train_rows)
    val_mask = verify_masks(tokenizer, val_rows) if val_rows else MaskReport()
    if rank0:
        log(f"mask check passed: {mask.rows} rows, {mask.supervised_tokens}/{mask.tokens} tokens supervised "
            f"({mask.share:.1%}), {mask.supervised_end_tokens}/{mask.assistant_turns} assistant end tokens")

    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    model = load_model(opt, device, targets.modules if targets else None)
    if targets is None and not opt.full:
        targets = lora_choice(model.get_base_model())
    attention = getattr(model.config, "_attn_implementation", None)
    packing = opt.packing == "on" or (opt.packing == "auto" and attention in FLASH_ATTENTION)
    checkpointing = opt.gradient_checkpointing if opt.gradient_checkpointing is not None else device == "cuda"
    collator = (DataCollatorWithFlattening(return_position_ids=True) if packing
                else PaddedCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0))
    args = TrainingArguments(
        output_dir=str(opt.out / CHECKPOINTS), num_train_epochs=opt.epochs, max_steps=opt.max_steps,
        learning_rate=opt.lr or (1e-5 if opt.full else 2e-4), lr_scheduler_type="cosine",
        warmup_steps=opt.warmup_ratio, per_device_train_batch_size=opt.batch_size,
        per_device_eval_batch_size=opt.batch_size, gradient_accumulation_steps=opt.grad_accum,
        train_sampling_strategy="random" if packing else "group_by_length", bf16=device == "cuda", use_cpu=device == "cpu",
        gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1, save_strategy="steps", save_steps=opt.save_steps, save_total_limit=2,
        eval_strategy=("steps" if opt.eval_steps else "epoch") if val_rows else "no", eval_steps=opt.eval_steps,
        report_to=[], seed=opt.seed, data_seed=opt.seed, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        dataloader_num_workers=0, disable_tqdm=False,
    )
    timing: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["start"], timing["tokens_start"] = time.perf_counter(), float(state.num_input_tokens_seen or 0)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["seconds"] = time.perf_counter() - timing["start"]
            timing["tokens"] = float(state.num_input_tokens_seen or 0) - timing["tokens_start"]

    trainer = Trainer(model=model, args=args, train_dataset=Rows(train_rows),
                      eval_dataset=Rows(val_rows) if val_rows else None, data_collator=collator,
                      callbacks=[Clock()])
    resume = latest_checkpoint(opt.out / CHECKPOINTS)
    if rank0 and resume:
        log(f"resuming from {resume}")
    initial_eval = trainer.evaluate() if val_rows and resume is None else None
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    evaluated_at_end = any(h.get("step") == trainer.state.global_step and "eval_loss" in h
                           for h in trainer.state.log_history)
    final_eval = trainer.evaluate() if val_rows and not evaluated_at_end else None
    report: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        if opt.full:
            trainer.model.config.use_cache = True
        trainer.model.save_pretrained(str(opt.out))
        if opt.full:
            copy_tokenizer(opt.base, opt.out)
        else:
            problems = adapter_problems(opt.out)
            if problems:
                raise TrainingError(f"the adapter holds weights vLLM refuses: {problems[:3]}")
        history = trainer.state.log_history
        report = {
            "base": opt.base, "data": str(opt.data), "mode": "full" if opt.full else "lora",
            "options": json.loads(opt.model_dump_json()), "device": device,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")), "attention": attention,
            "batching": "padding-free packing" if packing else "length-grouped padded batches",
            "gradient_checkpointing": checkpointing, "dtype": "bfloat16" if device == "cuda" else "float32",
            "resumed_from": str(resume) if resume else None,
            "rows": {"train": len(train_rows), "val": len(val_rows), "dropped_too_long": dropped + val_dropped},
            "mask": {"train": {k: v for k, v in asdict(mask).items() if k != "problems"} | {"share": mask.share},
                     "val": {k: v for k, v in asdict(val_mask).items() if k != "problems"} | {"share": val_mask.share}},
            "steps": trainer.state.global_step,
            "train_seconds": timing.get("seconds"), "tokens_trained": timing.get("tokens"),
            "tokens_per_second": (timing["tokens"] / timing["seconds"]) if timing.get("seconds") else None,
            "loss": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
            "eval_loss": ([{"step": 0, "eval_loss": initial_eval["eval_loss"]}] if initial_eval else [])
            + [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h]
            + ([{"step": trainer.state.global_step, "eval_loss": final_eval["eval_loss"]}] if final_eval else []),
            "versions": versions(),
        }
        if report["tokens_per_second"] is not None and not math.isfinite(report["tokens_per_second"]):
            report["tokens_per_second"] = None
        (opt.out / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(opt.out / CHECKPOINTS, ignore_errors=True)
    leave_process_group()
    return report


def leave_process_group() -> None:
    """Under torchrun, a rank that exits with its process group alive aborts in C++ teardown (SIGABRT) while
    rank 0 is still saving; every rank leaves the group itself (local for gloo and NCCL) before returning."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
