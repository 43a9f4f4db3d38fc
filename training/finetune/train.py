"""`nightowl train`: a LoRA (or full) fine-tune on an exported dataset, loss on assistant tokens only.

transformers' Trainer + peft (TRL is not used: the mask and the rendering are ours, so that they match vLLM).
Several GPUs or machines: launch the same command under `torchrun` or `accelerate launch`: DDP (a full replica per
process), or with `--fsdp` FSDP2 (weights, gradients and optimizer state sharded over the processes, one layer
gathered at a time) for bases that do not fit on one device. Re-running the same command
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
from training.dataset.export import load_tokenizer, nightowl_version, read_jsonl
from training.dataset.mask import (
    IGNORE,
    Encoded,
    MaskReport,
    cut_to_length,
    encode,
    untrained_special_tokens,
    untrained_warning,
    verify_masks,
)
from training.dataset.render import end_token
from training.finetune.lora_targets import LoraTargetError, LoraTargets
from training.finetune.memory_plan import LOSS_CHUNK_TOKENS, Plan, PlanError, Settings, refusal, suggestions
from training.layout import TRAINING_REPORT, TRAINING_REPORT_FILE, check_dataset_format

CHECKPOINTS = "checkpoints"
REPORT = TRAINING_REPORT
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
    """Default: off on CPU; on GPU off when the memory plan fits well without it, else on."""
    ignore_plan: bool = False
    """Train even when the memory plan says it will not fit."""
    memory_gib: float | None = Field(default=None, gt=0)
    """Memory one training process may use per device (default: what the device reports free), e.g. to leave
    room for a model server on the same GPU."""
    fsdp: bool = False
    """Shard weights, gradients and optimizer state over the processes (FSDP2) instead of one replica each (DDP);
    with gradient checkpointing, FSDP's activation checkpointing is used. One process: nothing to shard."""


class TrainReport(BaseModel):
    """OUT/training_report.json: what was trained, how, and how it went."""
    base: str
    data: str
    mode: Literal["lora", "full"]
    options: dict[str, Any]
    device: str
    world_size: int
    attention: str | None
    batching: str
    gradient_checkpointing: bool | None
    dtype: str
    resumed_from: str | None
    lora_modules: list[str] | None
    peak_memory_gib: float | None
    plan: dict[str, Any] | None
    rows: dict[str, int]
    mask: dict[str, dict[str, Any]]
    steps: int
    train_seconds: float | None
    tokens_trained: float | None
    tokens_per_second: float | None
    step_times: list[dict[str, Any]]
    loss: list[dict[str, Any]]
    """{"step": N, "loss": L} per logged step."""
    eval_loss: list[dict[str, Any]]
    versions: dict[str, str]

    def summary(self, out: Path) -> str:
        """The line `nightowl train` prints at the end."""
        return (f"{self.mode} fine-tune done: {self.steps} steps, {self.tokens_per_second or 0:.0f} tokens/s, final "
                f"loss {self.loss[-1]['loss'] if self.loss else float('nan'):.4f} -> {out}")


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
    check_dataset_format(opt.data)
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


def attention_implementation(device: str) -> str | None:
    """flash_attention_2 on GPU when the flash-attn package is installed (varlen kernels: padding-free packing
    without a mask); otherwise transformers' default, SDPA (PyTorch's flash / memory-efficient kernels)."""
    import importlib.util

    return "flash_attention_2" if device == "cuda" and importlib.util.find_spec("flash_attn") else None


def load_model(opt: TrainOptions, device: str, targets: list[str] | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    attention = attention_implementation(device)
    model = AutoModelForCausalLM.from_pretrained(opt.base, dtype=dtype,
                                                 **({"attn_implementation": attention} if attention else {}))
    return with_adapter(model, opt, device, targets)


def with_adapter(model: Any, opt: TrainOptions, device: str, targets: list[str] | None = None) -> Any:
    # A KV cache during training is waste, and its presence turns off transformers' packed-sequence masks:
    # packed rows would attend to each other.
    model.config.use_cache = False
    if opt.full:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=opt.rank, lora_alpha=opt.alpha or 2 * opt.rank, lora_dropout=0.0, bias="none",
                        target_modules=targets or lora_choice(model).modules, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if device == "cuda":
        # peft casts each adapted layer's bf16 input to the adapters' float32, and autocast casts it back: a
        # separate bf16 copy of the input kept per adapted layer. Under autocast the matmul is bf16 either way.
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return model


def lora_choice(model: Any) -> LoraTargets:
    from training.finetune.lora_targets import choose

    try:
        return choose(model)
    except LoraTargetError as e:
        raise TrainingError(str(e)) from None


def linear_projections(model: Any) -> list[str]:
    """The modules a LoRA adapter takes on `model` (see training/finetune/lora_targets.py): vLLM matches on these
    names."""
    return lora_choice(model).modules


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


def adapter_problems(out: Path, targets: LoraTargets | None = None) -> list[str]:
    """Tensors vLLM would refuse: lm_head or embedding weights, or a module outside the chosen targets."""
    from safetensors import safe_open

    from training.finetune.lora_targets import adapter_problems as problems

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        return problems(list(f.keys()), targets)


def world_size() -> int:
    """The training processes (torchrun's WORLD_SIZE; 1 when launched alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def plan_settings(opt: TrainOptions, device: str, processes: int | None = None) -> Settings:
    """`processes`: plan for that many training processes (default: this launch's)."""
    return Settings(max_length=opt.max_length, batch_size=opt.batch_size, grad_accum=opt.grad_accum, full=opt.full,
                    rank=opt.rank, gradient_checkpointing=opt.gradient_checkpointing, packing=opt.packing,
                    device=device,  # type: ignore[arg-type]
                    world_size=processes or world_size(), attention=attention_implementation(device),
                    memory_gib=opt.memory_gib, fsdp=opt.fsdp)


def fsdp_arguments(model: Any, checkpointing: bool) -> dict[str, Any]:
    """TrainingArguments for FSDP2, wrapping each decoder layer (the unit gathered at a time)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer = type(base.get_decoder().layers[0]).__name__
    return {"fsdp": True, "fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": [layer],
                                          "activation_checkpointing": checkpointing}}


def check_plan(opt: TrainOptions, device: str, log: Any | None) -> tuple[Plan | None, LoraTargets | None]:
    """The memory plan and the LoRA targets, from config.json alone (no weights loaded); TrainingError in one line,
    naming the options that would fit, when the plan does not fit (unless --ignore-plan). (None, None) when the
    config cannot be read: loading the base then says what is wrong."""
    from training.finetune.lora_targets import choose
    from training.finetune.memory_plan import meta_model, plan, read_config

    try:
        estimate = plan(opt.base, plan_settings(opt, device))
        targets = None if opt.full else choose(meta_model(read_config(opt.base)))
    except (PlanError, LoraTargetError) as e:
        if log:
            log(f"no memory plan: {e}")
        return None, None
    if estimate.fits is False and not opt.ignore_plan:
        raise TrainingError(refusal(estimate, suggestions(opt.base, plan_settings(opt, device), estimate.devices)))
    if log:
        budget = f" of {estimate.budget_gib:g} GiB" if estimate.budget_gib is not None else ""
        log(f"memory plan: about {estimate.peak_gib_per_device:g} GiB per device{budget} at --max-length "
            f"{opt.max_length}, batch {opt.batch_size}"
            + (", checkpointing" if estimate.gradient_checkpointing else "")
            + ("" if estimate.fits is not False else " (does not fit; --ignore-plan given)"))
        if targets is not None:
            log(targets.describe())
    return estimate, targets


class ChunkedLoss:
    """Cross-entropy through the output head a chunk of tokens at a time, on supervised positions only.

    The model computes no logits (`logits_to_keep` is empty); a forward hook on its decoder keeps the final hidden
    states (in the compute dtype: output_hidden_states would come back through accelerate's float32 conversion,
    one float32 copy per layer), and each chunk's logits are computed under activation checkpointing, so one
    chunk's logits exist at a time instead of the whole sequence's (at 32k tokens and a 152k vocabulary, 20 GB in
    float32). Same value as transformers' causal-LM loss: labels shifted left, summed, divided by the supervised
    tokens of the accumulated batch when the Trainer gives that count, else averaged."""

    def __init__(self, model: Any, chunk: int = LOSS_CHUNK_TOKENS):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head, self.chunk = base.get_output_embeddings(), chunk
        self.hidden: Any = None
        base.get_decoder().register_forward_hook(self.keep)

    def keep(self, module: Any, args: Any, output: Any) -> None:
        self.hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        import torch
        import torch.nn.functional as F
        from torch.utils.checkpoint import checkpoint

        hidden, self.hidden = self.hidden, None
        labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:].to(hidden.device)
        keep = labels != IGNORE
        supervised, labels = hidden[keep], labels[keep]
        if labels.numel() == 0:
            return hidden.sum() * 0.0  # keeps every parameter in the graph (DDP)
        total = sum(checkpoint(self.piece, supervised[i:i + self.chunk], labels[i:i + self.chunk],
                               use_reentrant=False) for i in range(0, labels.numel(), self.chunk))
        if num_items_in_batch is None:
            return total / labels.numel()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch

    def piece(self, hidden: Any, labels: Any) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(self.head(hidden.to(self.head.weight.dtype)).float(), labels, reduction="sum")


def peak_memory_gib(device: str) -> float | None:
    """This process's peak: allocated GPU memory, or on CPU the resident-set high-water mark (VmHWM)."""
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 3)
    except OSError:
        pass
    return None


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


def train(opt: TrainOptions, log: Any = print, model: Any = None) -> TrainReport | None:
    """`model`: the base already built (bench/train_gpu.py builds random-weight models of real shapes from a
    config alone); default: loaded from opt.base. None on the ranks other than 0 of a distributed run."""
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
    model = load_model(opt, device, targets.modules if targets else None) if model is None else \
        with_adapter(model, opt, device, targets.modules if targets else None)
    mask.untrained_special_tokens = untrained_special_tokens(model, tokenizer, train_rows)
    if rank0 and mask.untrained_special_tokens:
        log("warning: " + untrained_warning(opt.base, mask.untrained_special_tokens))
    if targets is None and not opt.full:
        targets = lora_choice(model.get_base_model())
    attention = getattr(model.config, "_attn_implementation", None)
    packing = opt.packing == "on" or (opt.packing == "auto" and attention in FLASH_ATTENTION)
    checkpointing = opt.gradient_checkpointing if opt.gradient_checkpointing is not None else \
        estimate.gradient_checkpointing if estimate else device == "cuda"
    collator = (DataCollatorWithFlattening(return_position_ids=True) if packing
                else PaddedCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0))
    sharded = opt.fsdp and world_size() > 1
    if rank0 and opt.fsdp:
        log(f"FSDP over {world_size()} processes: weights, gradients and optimizer state sharded" if sharded else
            "--fsdp with one process: nothing to shard, training unsharded (launch with torchrun --nproc_per_node N)")
    args = TrainingArguments(
        output_dir=str(opt.out / CHECKPOINTS), num_train_epochs=opt.epochs, max_steps=opt.max_steps,
        learning_rate=opt.lr or (1e-5 if opt.full else 2e-4), lr_scheduler_type="cosine",
        warmup_steps=opt.warmup_ratio, per_device_train_batch_size=opt.batch_size,
        per_device_eval_batch_size=opt.batch_size, gradient_accumulation_steps=opt.grad_accum,
        train_sampling_strategy="random" if packing else "group_by_length", bf16=device == "cuda",
        use_cpu=device == "cpu",
        gradient_checkpointing=checkpointing and not sharded, gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1, save_strategy="steps", save_steps=opt.save_steps, save_total_limit=2,
        eval_strategy=("steps" if opt.eval_steps else "epoch") if val_rows else "no", eval_steps=opt.eval_steps,
        report_to=[], seed=opt.seed, data_seed=opt.seed, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        ddp_backend="gloo" if device == "cpu" and world_size() > 1 else None,
        **(fsdp_arguments(model, checkpointing) if sharded else {}),
        dataloader_num_workers=0, disable_tqdm=False,
    )
    timing: dict[str, float] = {}
    steps: list[dict[str, float]] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["start"], timing["tokens_start"] = time.perf_counter(), float(state.num_input_tokens_seen or 0)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["step_start"], timing["step_tokens"] = time.perf_counter(), float(state.num_input_tokens_seen or 0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            steps.append({"seconds": round(time.perf_counter() - timing["step_start"], 4),
                          "tokens": float(state.num_input_tokens_seen or 0) - timing["step_tokens"]})

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["seconds"] = time.perf_counter() - timing["start"]
            timing["tokens"] = float(state.num_input_tokens_seen or 0) - timing["tokens_start"]

    trainer = chunked_loss_trainer()(model=model, args=args, train_dataset=Rows(train_rows),
                                     eval_dataset=Rows(val_rows) if val_rows else None, data_collator=collator,
                                     callbacks=[Clock()], compute_loss_func=ChunkedLoss(model))
    resume = latest_checkpoint(opt.out / CHECKPOINTS)
    if rank0 and resume:
        log(f"resuming from {resume}")
    initial_eval = trainer.evaluate() if val_rows and resume is None else None
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    evaluated_at_end = any(h.get("step") == trainer.state.global_step and "eval_loss" in h
                           for h in trainer.state.log_history)
    final_eval = trainer.evaluate() if val_rows and not evaluated_at_end else None
    report: TrainReport | None = None
    if trainer.is_world_process_zero():
        if opt.full:
            trainer.model.config.use_cache = True
        trainer.model.save_pretrained(str(opt.out))
        if opt.full:
            copy_tokenizer(opt.base, opt.out)
        else:
            problems = adapter_problems(opt.out, targets)
            if problems:
                raise TrainingError(f"the adapter holds weights vLLM refuses: {problems[:3]}")
        history = trainer.state.log_history
        fields: dict[str, Any] = {
            "base": opt.base, "data": str(opt.data), "mode": "full" if opt.full else "lora",
            "options": json.loads(opt.model_dump_json()), "device": device,
            "world_size": world_size(), "attention": attention,
            "batching": "padding-free packing" if packing else "length-grouped padded batches",
            "gradient_checkpointing": checkpointing, "dtype": "bfloat16" if device == "cuda" else "float32",
            "resumed_from": str(resume) if resume else None,
            "lora_modules": targets.modules if targets else None,
            "peak_memory_gib": peak_memory_gib(device),
            "plan": {"peak_gib_per_device": estimate.peak_gib_per_device, "gib": estimate.gib,
                     "fits": estimate.fits} if estimate else None,
            "rows": {"train": len(train_rows), "val": len(val_rows), "dropped_too_long": dropped + val_dropped},
            "mask": {"train": {k: v for k, v in asdict(mask).items() if k != "problems"} | {"share": mask.share},
                     "val": {k: v for k, v in asdict(val_mask).items() if k != "problems"} | {"share": val_mask.share}},
            "steps": trainer.state.global_step,
            "train_seconds": timing.get("seconds"), "tokens_trained": timing.get("tokens"),
            "tokens_per_second": (timing["tokens"] / timing["seconds"]) if timing.get("seconds") else None,
            "step_times": steps,
            "loss": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
            "eval_loss": ([{"step": 0, "eval_loss": initial_eval["eval_loss"]}] if initial_eval else [])
            + [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h]
            + ([{"step": trainer.state.global_step, "eval_loss": final_eval["eval_loss"]}] if final_eval else []),
            "versions": versions(),
        }
        if fields["tokens_per_second"] is not None and not math.isfinite(fields["tokens_per_second"]):
            fields["tokens_per_second"] = None
        report = TrainReport(**fields)
        (opt.out / REPORT).write_text(TRAINING_REPORT_FILE.dumps(report.model_dump(mode="json"), indent=1) + "\n",
                                      encoding="utf-8")
        shutil.rmtree(opt.out / CHECKPOINTS, ignore_errors=True)
    leave_process_group()
    return report


def chunked_loss_trainer() -> Any:
    from transformers import Trainer

    class Chunked(Trainer):
        """The model computes no logits; `compute_loss_func` (ChunkedLoss) applies the head by chunks."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            import torch

            inputs = {**inputs, "logits_to_keep": torch.zeros(0, dtype=torch.long, device=self.args.device)}
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return Chunked


def leave_process_group() -> None:
    """Under torchrun, a rank that exits with its process group alive aborts in C++ teardown (SIGABRT) while
    rank 0 is still saving; every rank leaves the group itself (local for gloo and NCCL) before returning."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
