"""Which modules a LoRA adapter adapts: only those vLLM can load for the base's architecture, decided before training.

vLLM accepts an adapter module when its name (after vLLM's packing: q/k/v_proj -> qkv_proj, gate/up_proj ->
gate_up_proj) is a LoRA-capable layer of its own model for that architecture, and refuses the whole adapter
otherwise ("expected target modules in {...} but received [...]"). `VLLM_LORA_MODULES` lists, per architecture we
serve, the adapter-visible names outside routed experts that vLLM 0.32 accepts, read from its model code
(tests/training/finetune/test_lora_targets.py checks the Qwen2 and Qwen3-MoE rows against the list the installed vLLM
engine itself reports).

Mixture-of-experts bases: transformers 5 stores routed experts as fused 3-D parameters (not nn.Linear), and peft
saves LoRA on them (`target_parameters`) in a fused 3-D layout that vLLM refuses for 2-D-expert models such as
Qwen3-MoE ("contains fused 3D MoE weights ... but the model uses a 2D MoE LoRA wrapper"). Routers (`gate`) load,
but adapting routing from a few hundred trajectories moves load balance more than behaviour. So on a MoE base the
adapter takes attention and any dense or shared-expert MLP; routed experts and routers stay frozen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ATTENTION = frozenset({"q_proj", "k_proj", "v_proj", "o_proj"})
MLP = frozenset({"gate_proj", "up_proj", "down_proj"})
ROUTERS = frozenset({"gate", "shared_expert_gate", "router"})
"""MoE routing layers: never adapted (see the module docstring)."""
VLLM_LORA_MODULES: dict[str, frozenset[str]] = {
    # dense: every projection (vLLM packs q/k/v and gate/up and maps the names back)
    "Qwen2ForCausalLM": ATTENTION | MLP,
    "Qwen3ForCausalLM": ATTENTION | MLP,
    "LlamaForCausalLM": ATTENTION | MLP,
    "MistralForCausalLM": ATTENTION | MLP,
    "Gemma2ForCausalLM": ATTENTION | MLP,
    "Gemma3ForCausalLM": ATTENTION | MLP,
    "Phi3ForCausalLM": frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    # mixture of experts: attention, dense layers' MLP (Qwen3-MoE `mlp_only_layers`), shared experts, routers
    # (routed experts load only in vLLM's per-expert 2-D layout, which peft does not write for transformers 5)
    "Qwen3MoeForCausalLM": ATTENTION | MLP | {"gate"},
    "Qwen2MoeForCausalLM": ATTENTION | MLP | {"gate", "shared_expert_gate"},
    "MixtralForCausalLM": ATTENTION | {"gate"},
}
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


class LoraTargetError(ValueError):
    """No module of this base can carry an adapter vLLM loads."""


@dataclass
class LoraTargets:
    architecture: str
    modules: list[str]
    """Short module names given to peft's target_modules."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Linear layers of the base left out, and why."""
    known: bool = True
    """The architecture is in VLLM_LORA_MODULES (else every non-router linear layer is taken unchecked)."""
    moe: bool = False

    def describe(self) -> str:
        text = f"LoRA on {', '.join(self.modules)} ({self.architecture}"
        text += ", a mixture of experts: routed experts and routers stay frozen)" if self.moe else ")"
        if not self.known:
            text += f"; vLLM's LoRA support for {self.architecture} is not in nightowl's table: vLLM checks the " \
                    "adapter when it loads it"
        return text


def architecture(config: Any) -> str:
    archs = getattr(config, "architectures", None) or (config.get("architectures") if isinstance(config, dict)
                                                       else None)
    return archs[0] if archs else type(config).__name__


def is_moe(config: Any) -> bool:
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    text = get("text_config")
    if text is not None and not any(get(k) for k in EXPERT_KEYS):
        return is_moe(text)
    return any((get(k) or 0) > 1 for k in EXPERT_KEYS)


def linear_names(model: Any) -> list[str]:
    """Every nn.Linear's short name (q_proj, ..., down_proj), never the output head or embeddings."""
    import torch

    output = model.get_output_embeddings()
    return sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not output})


def choose(model: Any) -> LoraTargets:
    """The modules to adapt on `model` (a transformers causal LM, real or on the meta device)."""
    arch = architecture(model.config) if getattr(model.config, "architectures", None) else type(model).__name__
    moe = is_moe(model.config)
    candidates = linear_names(model)
    allowed = VLLM_LORA_MODULES.get(arch)
    skipped: dict[str, str] = {}
    modules = []
    for name in candidates:
        if name in ROUTERS and moe:
            skipped[name] = "a mixture-of-experts router"
        elif allowed is not None and name not in allowed:
            skipped[name] = f"vLLM cannot load LoRA on {name} for {arch}"
        elif name in ("lm_head", "embed_tokens"):
            skipped[name] = "vLLM refuses adapters with output-head or embedding weights"
        else:
            modules.append(name)
    if not modules:
        raise LoraTargetError(f"no linear layer of this {arch} base takes a LoRA adapter vLLM can load "
                              f"(skipped: {skipped or 'none found'}); use --full")
    return LoraTargets(architecture=arch, modules=modules, skipped=skipped, known=allowed is not None, moe=moe)


def adapter_modules(keys: list[str]) -> set[str]:
    """Short module names in a peft adapter's tensor names (`...self_attn.q_proj.lora_A.weight` -> q_proj)."""
    names = set()
    for key in keys:
        head = key.split(".lora_")[0]
        names.add(head.rpartition(".")[2])
    return names


def adapter_problems(keys: list[str], targets: LoraTargets | None = None) -> list[str]:
    """Tensor names vLLM would refuse: output head or embeddings, or a module outside the chosen targets."""
    bad = [k for k in keys if "lm_head" in k or "embed_tokens" in k]
    if targets is not None:
        allowed = set(targets.modules)
        bad += [k for k in keys if k not in bad and k.split(".lora_")[0].rpartition(".")[2] not in allowed]
    return bad
