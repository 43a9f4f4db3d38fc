"""What a checkpoint is, read from its files: its family (tool-call and reasoning parsers) and LoRA ranks.

Reads config.json (`model_type`), the chat template and, for a peft adapter, adapter_config.json (rank and
base model). Local directories are read directly; hub ids through the local Hugging Face cache, then the hub,
as transformers does. No weights are read. When no file can be read, the family is taken from the name and
a note says so.
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel

from agent.chat_template import TEMPLATE_FILES, read_chat_template, template_from_file
from sandbox.errors import UserError

ALLOWED_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""vLLM 0.32's `MaxLoRARanks`: `--max-lora-rank` takes only these."""
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
HUB_PROBE_TIMEOUT_S = 3.0
UNRELIABLE_TOOL_CALLERS = ("qwen2.5-coder", "qwen2_5-coder")
"""Name fragments of models that often answer in fenced JSON instead of a tool call."""


class CheckpointError(UserError, ValueError):
    """A model or adapter the user named cannot be served as given."""


class Family(BaseModel, frozen=True):
    name: str
    tool_call_parser: str
    reasoning_parser: str | None = None
    template_markers: tuple[str, ...] = ()
    """All of these appear in the family's chat template."""
    model_types: tuple[str, ...] = ()
    name_patterns: tuple[str, ...] = ()
    """Lower-case fragments of hub ids / directory names."""
    reasoning_in_history: bool = False
    """Its chat template renders past `reasoning_content` (used when the template itself cannot be read)."""
    note: str | None = None


# First match wins, so the more specific family comes first (Qwen3-Coder's template also has <tool_call>;
# DeepSeek-V3.1's template is V3's plus thinking).
FAMILIES: tuple[Family, ...] = (
    Family(name="Qwen3-Coder", tool_call_parser="qwen3_coder", template_markers=("<function=",),
           name_patterns=("qwen3-coder",)),
    Family(name="GLM-4.5/4.6", tool_call_parser="glm45", reasoning_parser="glm45", template_markers=("<arg_key>",),
           model_types=("glm4_moe",), name_patterns=("glm-4.5", "glm-4.6", "glm-4.7", "glm4.5", "glm4.6"),
           reasoning_in_history=True),
    Family(name="gpt-oss", tool_call_parser="openai", reasoning_parser="openai_gptoss",
           template_markers=("<|channel|>",), model_types=("gpt_oss",), name_patterns=("gpt-oss",)),
    Family(name="DeepSeek-V3.1", tool_call_parser="deepseek_v31", reasoning_parser="deepseek_v3",
           template_markers=("<｜tool▁calls▁begin｜>", "</think>"), name_patterns=("deepseek-v3.1", "deepseek-v3-1"),
           note="thinking is off unless requests send chat_template_kwargs {\"thinking\": true}"),
    Family(name="DeepSeek-V3", tool_call_parser="deepseek_v3", template_markers=("<｜tool▁calls▁begin｜>",),
           model_types=("deepseek_v3",), name_patterns=("deepseek-v3",)),
    Family(name="Llama 3.x", tool_call_parser="llama3_json", template_markers=("<|start_header_id|>",),
           model_types=("llama",), name_patterns=("llama-3", "llama3"),
           note="llama3_json parses the JSON tool calls of the checkpoint's own Llama 3.1+ template; vLLM's "
                "examples/tool_chat_template_llama3.1_json.jinja is not part of the vllm wheel: if you have "
                "it, pass `-- --chat-template FILE`"),
    Family(name="Hermes/ChatML (Qwen2.5, Qwen3, SERA)", tool_call_parser="hermes", template_markers=("<tool_call>",)),
)
DEFAULT_FAMILY = FAMILIES[-1]


class Adapter(BaseModel):
    name: str
    path: str
    rank: int
    base_model: str | None


class Checkpoint(BaseModel):
    model: str
    """What vLLM loads: the directory or hub id (for an adapter given as the model: its base)."""
    source: Literal["directory", "hub cache", "hub", "name only"]
    config: dict[str, Any] = {}
    chat_template: str | None = None
    adapter: Adapter | None = None
    """Set when the model given was a peft adapter directory."""
    notes: list[str] = []

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def allowed_lora_rank(rank: int, what: str) -> int:
    """The smallest rank vLLM accepts that holds `rank`; CheckpointError beyond the largest."""
    for allowed in ALLOWED_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise CheckpointError(f"{what} has LoRA rank {rank}; vLLM serves ranks up to {ALLOWED_LORA_RANKS[-1]} "
                          f"({', '.join(map(str, ALLOWED_LORA_RANKS))}): retrain with a smaller r or merge it "
                          "into the base model")


def read_adapter(name: str, path: str) -> Adapter:
    directory = Path(path).expanduser()
    config_path = directory / "adapter_config.json"
    if not config_path.is_file():
        what = "does not exist" if not directory.exists() else "has no adapter_config.json (not a peft adapter)"
        raise CheckpointError(f"adapter {name}: {path} {what}")
    config = read_json(config_path)
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    ranks = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool)]
    if not ranks or min(ranks) <= 0:
        raise CheckpointError(f"adapter {name}: {config_path} has no positive integer rank `r`")
    rank = max(ranks)
    allowed_lora_rank(rank, f"adapter {name} ({path})")
    return Adapter(name=name, path=str(directory.resolve()), rank=rank,
                   base_model=config.get("base_model_name_or_path") or None)


def is_hub_id(model: str) -> bool:
    return bool(HUB_ID.fullmatch(model)) and ".." not in model and "--" not in model and len(model) <= 96


def resolve_checkpoint(model: str) -> Checkpoint:
    """Read what a --model names; a one-line CheckpointError when it is neither a directory nor a hub id."""
    local = Path(model).expanduser()
    if local.is_dir():
        if (local / "adapter_config.json").is_file():
            return resolve_adapter_as_model(local)
        return read_directory(local)
    if local.exists():
        raise CheckpointError(f"--model {model} is a file, not a model directory or hub id")
    if not is_hub_id(model):
        raise CheckpointError(f"--model {model}: no such directory, and not a hub id either "
                              "(hub ids look like org/name, e.g. Qwen/Qwen3-Coder-30B-A3B-Instruct)")
    return read_hub(model)


def read_directory(directory: Path) -> Checkpoint:
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} has no config.json: not a model checkpoint (or an unfinished copy)")
    return Checkpoint(model=str(directory), source="directory", config=read_json(directory / "config.json"),
                      chat_template=read_chat_template(directory))


def resolve_adapter_as_model(directory: Path) -> Checkpoint:
    """A peft adapter given as --model: vLLM serves its base with the adapter loaded under the adapter's name."""
    adapter = read_adapter(directory.name, str(directory))
    if not adapter.base_model:
        raise CheckpointError(f"{directory} is a LoRA adapter without base_model_name_or_path in its "
                              "adapter_config.json: pass the base as --model and the adapter with --adapter")
    base = Path(adapter.base_model).expanduser()
    if base.is_dir() and (base / "adapter_config.json").is_file():
        raise CheckpointError(f"{directory}: its base {adapter.base_model} is itself an adapter")
    checkpoint = resolve_checkpoint(adapter.base_model)
    return checkpoint.model_copy(update={
        "adapter": adapter,
        "notes": [*checkpoint.notes, f"{directory} is a LoRA adapter (rank {adapter.rank}) of "
                                     f"{adapter.base_model}: serving the base with the adapter loaded"]})


def read_hub(repo_id: str) -> Checkpoint:
    files, source, problem = hub_files(repo_id)
    if "config.json" not in files and "adapter_config.json" not in files:
        return Checkpoint(model=repo_id, source="name only",
                          notes=[f"{repo_id}: {problem}; parsers are chosen from the name (override with "
                                 "--tool-call-parser / --reasoning-parser)"])
    if "config.json" not in files:
        raise CheckpointError(f"{repo_id} on the hub is a LoRA adapter: pass its base model as --model and the "
                              "adapter with --adapter NAME=PATH")
    template = next((t for name in TEMPLATE_FILES if name in files
                     and (t := template_from_file(files[name])) is not None), None)
    return Checkpoint(model=repo_id, source=source, config=read_json(files["config.json"]), chat_template=template)


def hub_files(repo_id: str) -> tuple[dict[str, Path], Literal["hub cache", "hub"], str]:
    """Config, template and adapter files of a hub model: from the local cache, else downloaded (and cached)."""
    names = ("config.json", "adapter_config.json", *TEMPLATE_FILES)
    try:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    except ImportError:
        return {}, "hub", "huggingface_hub is not installed (it comes with vLLM)"
    cached = {n: Path(p) for n in names if isinstance(p := try_to_load_from_cache(repo_id, n), str)}
    if "config.json" in cached or "adapter_config.json" in cached:
        return cached, "hub cache", ""
    if constants.HF_HUB_OFFLINE:
        return {}, "hub", "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    if not reachable(constants.ENDPOINT):
        return {}, "hub", f"not in the local Hugging Face cache and {constants.ENDPOINT} cannot be reached"
    files: dict[str, Path] = {}
    for name in names:
        try:
            files[name] = Path(hf_hub_download(repo_id, name))
        except Exception as e:  # missing optional files are normal; a missing repo is reported below
            if name == "config.json" and type(e).__name__ in ("RepositoryNotFoundError", "GatedRepoError"):
                raise CheckpointError(f"--model {repo_id}: no such model on the hub, or it is gated "
                                      "(log in with `hf auth login` or set HF_TOKEN)") from None
    return files, "hub", "" if files else "the hub returned none of its config files"


def reachable(endpoint: str) -> bool:
    """A quick connect, so an offline machine does not sit through huggingface_hub's retries (~25 s)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy can tell; let huggingface_hub try
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def pick_family(template: str | None, model_type: str | None, names: list[str]) -> tuple[Family, str]:
    """The family and the evidence for it: the chat template, then the name, then `model_type`."""
    for family in FAMILIES:
        if template and family.template_markers and all(m in template for m in family.template_markers):
            return family, "its chat template"
    lowered = [n.lower() for n in names]
    for family in FAMILIES:
        if any(p in n for n in lowered for p in family.name_patterns):
            return family, "its name"
    for family in FAMILIES:
        if model_type and model_type in family.model_types:
            return family, f"model_type {model_type}"
    return DEFAULT_FAMILY, "the default: no other family matched"


def checkpoint_names(checkpoint: Checkpoint, given: str) -> list[str]:
    names = [given, checkpoint.model]
    if checkpoint.adapter and checkpoint.adapter.base_model:
        names.append(checkpoint.adapter.base_model)
    return names


def unreliable_tool_caller(names: list[str]) -> bool:
    return any(p in n.lower() for n in names for p in UNRELIABLE_TOOL_CALLERS)


def kv_cache_bytes_per_token(config: dict[str, Any]) -> int | None:
    """The KV cache one token takes at the checkpoint's dtype, from config.json (an upper bound: sliding-window
    layers hold fewer tokens); None when the config does not say."""
    c = config.get("text_config") or config
    try:
        layers = int(c["num_hidden_layers"])
        if c.get("kv_lora_rank"):  # multi-head latent attention (DeepSeek V3): one compressed vector per layer
            per_layer = int(c["kv_lora_rank"]) + int(c.get("qk_rope_head_dim") or 0)
        else:
            heads = int(c["num_attention_heads"])
            head_dim = int(c.get("head_dim") or c["hidden_size"] // heads)
            per_layer = 2 * int(c.get("num_key_value_heads") or heads) * head_dim
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    dtype = c.get("dtype") or c.get("torch_dtype") or config.get("dtype") or config.get("torch_dtype")
    return layers * per_layer * (4 if dtype == "float32" else 2)


def context_note(config: dict[str, Any]) -> str | None:
    """What the model's full window costs in KV cache, so `auto` (or a chosen length) can be judged."""
    per_token = kv_cache_bytes_per_token(config)
    window = (config.get("text_config") or config).get("max_position_embeddings")
    if not per_token or not isinstance(window, int):
        return None
    return (f"KV cache {per_token / 1024:.0f} KiB per token (from config.json): the full {window:,}-token window "
            f"needs {per_token * window / 2**30:.1f} GiB per sequence")
