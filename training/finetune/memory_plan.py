"""`nightowl train --plan`: the peak memory one training process needs per device, from the base's config.json alone.

Nothing is loaded: the model is built on PyTorch's meta device (shapes, no storage) for exact parameter counts and
the LoRA target layers; activations follow from the config's shapes. The terms, per device:

- weights: every parameter in the training dtype (bf16 on GPU, float32 on CPU);
- trainable state: LoRA A/B in float32 with their gradients and AdamW's two moments (16 bytes a parameter); for a
  full fine-tune, gradients and both moments in the weights' dtype;
- activations: what autograd keeps for the backward pass, per token and layer (norm inputs in float32, the
  projections' inputs, rotated q/k and v and the attention output for SDPA, the MLP's gate/up/product; with
  gradient checkpointing only each layer's input plus one layer recomputed), times the tokens of one micro-batch
  (`--batch-size` x `--max-length`), plus the gradients in flight in one layer's backward;
- the larger of two transients on top of that: the loss (logits for one chunk of tokens at a time, as train.py
  computes cross-entropy by chunks: compute dtype, float32 upcast, log-softmax and its gradient) and one layer's
  gradients in flight;
- a fixed allowance: on GPU the CUDA context and kernels' workspaces, on CPU the training process itself.

Every rank holds a full replica under DDP (torchrun), so more GPUs do not lower the per-device peak; they raise
the tokens per step. With `--fsdp` over N processes the weights and the trainable state are sharded (1/N each) and
one decoder layer's weights are gathered at a time (two with the next one prefetched).
tests/training/finetune/test_memory_plan.py checks the estimate against the measured peak of real training runs on
CPU (within 25%); bench/train_gpu.py prints plan vs measured on a GPU.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

GIB = 1024 ** 3
LOSS_CHUNK_TOKENS = 1024
"""Tokens whose logits exist at once in train.py's chunked cross-entropy."""
CUDA_OVERHEAD_GIB = 1.0
"""CUDA context, cuBLAS/attention workspaces and the caching allocator's rounding."""
CPU_OVERHEAD_GIB = 0.3
"""The training process itself on CPU: interpreter, torch/transformers/peft (0.26 GiB measured after the imports),
tokenizer, rows and Trainer."""
CPU_MARGIN = 0.9
AUTO_NO_CHECKPOINTING = 0.8
"""`--gradient-checkpointing auto` on GPU turns it off when the plan without it stays under this share of the
budget (the margin is for the estimate's error on GPUs, where it has not been measured yet)."""
"""Share of the machine's available RAM a CPU run may plan to use."""


class PlanError(ValueError):
    """config.json is missing or does not describe a causal LM transformers can build."""


@dataclass
class Shape:
    architecture: str
    layers: int
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    """The dense MLP's width (0 when every layer is a mixture of experts)."""
    dense_layers: int
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0
    qk_norm: bool = False


@dataclass
class Settings:
    max_length: int
    batch_size: int = 1
    grad_accum: int = 1
    full: bool = False
    rank: int = 16
    gradient_checkpointing: bool | None = None
    """None (auto): off on CPU; on GPU off when the plan without it fits well (AUTO_NO_CHECKPOINTING), else on."""
    packing: Literal["auto", "on", "off"] = "auto"
    device: Literal["cuda", "cpu"] = "cpu"
    world_size: int = 1
    attention: str | None = None
    """The attention implementation training uses (None: transformers' default, SDPA)."""
    memory_gib: float | None = None
    """Memory one process may use per device (None: what the device reports free)."""
    fsdp: bool = False


@dataclass
class Plan:
    base: str
    architecture: str
    mode: str
    device: str
    dtype: str
    max_length: int
    batch_size: int
    tokens_per_step: int
    """Upper bound: every row at --max-length (batch x max length x grad accum x processes)."""
    gradient_checkpointing: bool
    parameters: int
    trainable_parameters: int
    lora_modules: list[str]
    gib: dict[str, float]
    """The terms of the peak: weights, trainable_state, activations, loss, overhead."""
    activations_gib: dict[str, float]
    """Activations with and without gradient checkpointing (the chosen one is in `gib`)."""
    peak_gib_per_device: float
    devices: list[dict[str, Any]]
    world_size: int
    budget_gib: float | None
    memory_gib: float | None
    """--memory-gib when given (the budget then)."""
    fits: bool | None
    """None when no budget is known (e.g. --plan for a GPU on a machine without one)."""
    suggestions: list[str] = field(default_factory=list)
    """Option changes that would fit, when it does not."""
    vllm_serves_lora: bool | None = None
    """Whether the installed vLLM serves LoRA adapters for this architecture (None: not checked or unknown)."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def read_config(base: str) -> Any:
    """transformers' config for `base` (a directory with config.json, or a hub id already in the local cache)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(base)
    except (OSError, ValueError, KeyError) as e:
        raise PlanError(f"cannot read a model config from {base}: {str(e).splitlines()[0]}") from None


def text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def meta_model(config: Any) -> Any:
    """The model with the base's shapes on the meta device: parameter counts and module names, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception as e:  # an architecture transformers cannot build is a plan error, whatever it raises
        raise PlanError(f"transformers cannot build a causal LM from this config ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None


def shape_of(config: Any, model: Any | None = None) -> Shape:
    from training.finetune.lora_targets import architecture

    c = text_config(config)
    hidden = c.hidden_size
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or hidden // heads
    experts = next((getattr(c, k) for k in ("num_experts", "num_local_experts", "n_routed_experts")
                    if getattr(c, k, None)), 0) or 0
    layers = c.num_hidden_layers
    dense_layers = layers
    if experts > 1:
        step = getattr(c, "decoder_sparse_step", 1) or 1
        only = set(getattr(c, "mlp_only_layers", None) or [])
        first_dense = getattr(c, "first_k_dense_replace", 0) or 0
        dense_layers = sum(1 for i in range(layers) if i in only or i < first_dense or (i + 1) % step != 0)
    qk_norm = model is not None and any(n.endswith("q_norm") for n, _ in model.named_modules())
    return Shape(architecture=architecture(config), layers=layers, hidden=hidden, vocab=c.vocab_size, heads=heads,
                 kv_heads=getattr(c, "num_key_value_heads", None) or heads, head_dim=head_dim,
                 intermediate=getattr(c, "intermediate_size", 0) or 0, dense_layers=dense_layers,
                 experts=experts if experts > 1 else 0,
                 experts_per_token=getattr(c, "num_experts_per_tok", 0) or 0,
                 expert_intermediate=getattr(c, "moe_intermediate_size", 0) or 0,
                 shared_intermediate=getattr(c, "shared_expert_intermediate_size", 0) or 0, qk_norm=qk_norm)


def decoder_layers(model: Any) -> list[Any]:
    """The model's decoder layers (the unit FSDP wraps and gathers)."""
    return list(model.get_decoder().layers)


def lora_parameters(model: Any, modules: list[str], rank: int) -> int:
    import torch

    wanted = set(modules)
    return sum(rank * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rpartition(".")[2] in wanted)


def layer_bytes_per_token(s: Shape, act: int, moe_layer: bool, masked: bool, lora_per_layer: int) -> float:
    """Bytes autograd keeps per token for one decoder layer without checkpointing."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    norms = 2 * (4 * s.hidden + act * s.hidden)  # float32 input (or upcast copy) + the normed output
    # SDPA keeps rotated q, k and v, its output and log-sum-exp; with a mask (padding, packing under SDPA) k and
    # v are first repeated to every query head. The output is copied to a contiguous o_proj input.
    kv_kept = 2 * (q if masked and s.kv_heads != s.heads else kv)
    attention = act * (q + kv_kept + 2 * q) + 4 * s.heads
    if s.qk_norm:
        attention += 4 * (q + kv) + act * (q + kv)
    if moe_layer:
        slots = s.experts_per_token
        mlp = slots * act * (3 * s.expert_intermediate + s.hidden) + 8 * s.experts
        mlp += 4 * act * s.shared_intermediate
    else:
        mlp = 4 * act * s.intermediate
    return norms + attention + mlp + 4 * lora_per_layer


def plan(base: str, settings: Settings, devices: list[dict[str, Any]] | None = None) -> Plan:
    """The estimate for `settings` on `devices` (default: what this machine has for settings.device)."""
    from training.finetune.lora_targets import LoraTargetError, choose

    config = read_config(base)
    model = meta_model(config)
    shape = shape_of(config, model)
    device = settings.device
    act = 2 if device == "cuda" else 4
    weight_bytes = act
    params = sum(p.numel() for p in model.parameters())
    notes: list[str] = []
    if settings.full:
        modules: list[str] = []
        trainable = params
        state = params * 3 * weight_bytes
    else:
        try:
            targets = choose(model)
        except LoraTargetError as e:
            raise PlanError(str(e)) from None
        modules = targets.modules
        trainable = lora_parameters(model, modules, settings.rank)
        state = trainable * 16
        if targets.moe:
            notes.append(targets.describe())
    checkpointing = settings.gradient_checkpointing if settings.gradient_checkpointing is not None \
        else device == "cuda"
    attention = settings.attention or "sdpa"
    packing = settings.packing == "on" or (settings.packing == "auto" and attention.startswith("flash_attention"))
    rows, width = (1, settings.batch_size * settings.max_length) if packing else (settings.batch_size,
                                                                                     settings.max_length)
    tokens = rows * width
    masked = not attention.startswith("flash_attention") and (packing or settings.batch_size > 1)
    lora_per_layer = 0 if settings.full else settings.rank * len(modules)
    moe_layers = shape.layers - shape.dense_layers
    per_token_layers = (shape.dense_layers * layer_bytes_per_token(shape, act, False, masked, lora_per_layer)
                        + moe_layers * layer_bytes_per_token(shape, act, True, masked, lora_per_layer))
    widest = max(shape.dense_layers and layer_bytes_per_token(shape, act, False, masked, lora_per_layer),
                 moe_layers and layer_bytes_per_token(shape, act, True, masked, lora_per_layer))
    mask_bytes = rows * width * width if masked else 0  # a boolean 4-D mask per row
    # Backward of one layer: the gradients of its widest tensors (MLP or expert intermediate, hidden) in flight.
    inner = max(shape.intermediate if shape.dense_layers else 0,
                shape.experts_per_token * shape.expert_intermediate if moe_layers else 0)
    in_flight = act * (3 * inner + 4 * shape.hidden) * tokens
    # The final norm's input and output, and the hidden-state gradient the loss chunks accumulate into.
    head_side = (4 + 2 * act) * shape.hidden * tokens
    without = per_token_layers * tokens + head_side + mask_bytes
    with_ckpt = (shape.layers * act * shape.hidden + widest) * tokens + head_side + mask_bytes
    chunk = min(tokens, LOSS_CHUNK_TOKENS)
    loss = chunk * shape.vocab * (act + 12)
    overhead = (CUDA_OVERHEAD_GIB if device == "cuda" else CPU_OVERHEAD_GIB) * GIB
    # The loss chunks run first in the backward pass, then one layer's backward at a time: whichever of the two
    # transients is larger sits on top of everything saved.
    transient = max(loss, in_flight)
    weights = params * weight_bytes
    if settings.fsdp and settings.world_size > 1:
        # sharded over the processes; the layer being computed and the next one (prefetched) are whole
        largest_layer = max(sum(p.numel() for p in layer.parameters()) for layer in decoder_layers(model))
        weights = weights / settings.world_size + 2 * largest_layer * weight_bytes
        state = state / settings.world_size
        notes.append(f"FSDP over {settings.world_size} processes: weights, gradients and optimizer state sharded, "
                     "two decoder layers gathered at a time")
    fixed = weights + state + transient + overhead
    devices = devices if devices is not None else available_devices(device)
    budget = settings.memory_gib * GIB if settings.memory_gib is not None else \
        device_budget(devices, device, settings.world_size)
    if settings.gradient_checkpointing is None and device == "cuda" and budget is not None:
        # auto on GPU: checkpointing costs a recomputed forward (~a third more FLOPs); off when even without it
        # the plan stays under AUTO_NO_CHECKPOINTING of the budget
        checkpointing = fixed + without > AUTO_NO_CHECKPOINTING * budget
    activations = with_ckpt if checkpointing else without
    peak = fixed + activations
    fits = None if budget is None else peak <= budget
    result = Plan(
        base=base, architecture=shape.architecture, mode="full" if settings.full else "lora", device=device,
        dtype="bfloat16" if device == "cuda" else "float32", max_length=settings.max_length,
        batch_size=settings.batch_size,
        tokens_per_step=settings.batch_size * settings.max_length * settings.grad_accum * settings.world_size,
        gradient_checkpointing=checkpointing, parameters=params, trainable_parameters=trainable,
        lora_modules=modules,
        gib={k: round(v / GIB, 3) for k, v in (("weights", weights), ("trainable_state", state),
                                                ("activations", activations),
                                                ("loss_or_backward_transient", transient),
                                                ("overhead", overhead))},
        activations_gib={"with_checkpointing": round(with_ckpt / GIB, 3),
                         "without_checkpointing": round(without / GIB, 3)},
        peak_gib_per_device=round(peak / GIB, 2), devices=devices, world_size=settings.world_size,
        budget_gib=None if budget is None else round(budget / GIB, 2), memory_gib=settings.memory_gib, fits=fits,
        notes=notes)
    if packing:
        result.notes.append("padding-free packing: one row of up to batch x max length tokens per step")
    if settings.world_size > 1 and not settings.fsdp:
        result.notes.append(f"DDP over {settings.world_size} processes: each device holds a full replica")
    return result


def available_devices(device: str) -> list[dict[str, Any]]:
    """The device(s) this process trains on: its GPU (LOCAL_RANK under torchrun), or the machine's RAM."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return []
        local = int(os.environ.get("LOCAL_RANK", "0"))
        indices = [local] if "LOCAL_RANK" in os.environ else list(range(torch.cuda.device_count()))
        out = []
        for i in indices:
            free, total = torch.cuda.mem_get_info(i)
            out.append({"device": f"cuda:{i}", "name": torch.cuda.get_device_name(i),
                        "free_gib": round(free / GIB, 2), "total_gib": round(total / GIB, 2)})
        return out
    total, available = memory_info()
    return [{"device": "cpu", "name": "RAM", "free_gib": round(available / GIB, 2),
             "total_gib": round(total / GIB, 2)}]


def memory_info() -> tuple[int, int]:
    """(total, available) RAM in bytes (Linux /proc/meminfo; elsewhere the total counts as available)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return int(fields["MemTotal"].split()[0]) * 1024, int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total


def device_budget(devices: list[dict[str, Any]], device: str, world_size: int) -> float | None:
    """Bytes one training process may use: the smallest free GPU memory; on CPU, the available RAM shared by
    the processes on this machine."""
    if not devices:
        return None
    if device == "cuda":
        return min(d["free_gib"] for d in devices) * GIB
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    return devices[0]["free_gib"] * GIB * CPU_MARGIN / max(1, local)


def suggestions(base: str, settings: Settings, devices: list[dict[str, Any]]) -> list[str]:
    """Option changes that bring the estimate under the budget: checkpointing, one row per micro-batch, the
    longest --max-length (halving) with and without checkpointing, LoRA instead of a full fine-tune."""
    from dataclasses import replace

    found: list[str] = []

    def fits(**change: Any) -> Plan | None:
        p = plan(base, replace(settings, **change), devices)
        return p if p.fits else None

    def longest(**change: Any) -> tuple[int, Plan] | None:
        length = settings.max_length // 2
        while length >= 1024:
            if p := fits(max_length=length, **change):
                return length, p
            length //= 2
        return None

    checkpointing = plan(base, settings, devices).gradient_checkpointing
    if not checkpointing and (p := fits(gradient_checkpointing=True)):
        found.append(f"--gradient-checkpointing on ({p.peak_gib_per_device:g} GiB)")
    if settings.batch_size > 1 and (p := fits(batch_size=1, grad_accum=settings.grad_accum * settings.batch_size)):
        found.append(f"--batch-size 1 --grad-accum {settings.grad_accum * settings.batch_size} "
                     f"({p.peak_gib_per_device:g} GiB)")
    if hit := longest():
        found.append(f"--max-length {hit[0]} ({hit[1].peak_gib_per_device:g} GiB)")
    if not checkpointing and not found[:1] and (hit := longest(gradient_checkpointing=True)):
        found.append(f"--gradient-checkpointing on --max-length {hit[0]} ({hit[1].peak_gib_per_device:g} GiB)")
    if settings.world_size > 1 and not settings.fsdp and (p := fits(fsdp=True)):
        found.append(f"--fsdp ({p.peak_gib_per_device:g} GiB)")
    if settings.full and (p := fits(full=False)):
        found.append(f"LoRA instead of --full ({p.peak_gib_per_device:g} GiB)")
    return found


def refusal(p: Plan, fixes: list[str]) -> str:
    where = ", ".join(d["device"] for d in p.devices) or p.device
    budget = f"--memory-gib allows {p.budget_gib:g} GiB" if p.memory_gib is not None else \
        f"{where} has {p.budget_gib:g} GiB free"
    head = (f"this training needs about {p.peak_gib_per_device:g} GiB per device (weights {p.gib['weights']:g}, "
            f"activations {p.gib['activations']:g} at --max-length {p.max_length}) but {budget}")
    tail = ("; these would fit: " + ", or ".join(fixes)) if fixes else \
        "; no option change fits: use a machine with more memory or a smaller base"
    return head + tail + " (`nightowl train --plan` shows the estimate; --ignore-plan trains anyway)"
