"""The vLLM flags shared by every command that starts a server (`serve`, and `run` without --base-url).

Declared once as typer option types; `server_config()` turns them into a ServerConfig. Anything after `--`
on the command line goes to vLLM untouched.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.console import Console

from orchestrator.cli.config import default
from orchestrator.errors import UsageError
from orchestrator.serving.vllm_server import ServerConfig, VLLMServer, parse_adapters

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": False}
"""typer context settings: arguments after `--` land in ctx.args (handed to vLLM)."""

Adapters = Annotated[list[str], typer.Option("--adapter", help="LoRA adapter NAME=PATH loaded at start (repeatable; turns LoRA on).")]
Lora = Annotated[bool, typer.Option("--lora", help="Turn LoRA on without adapters, to load some at runtime.")]
MaxLoraRank = Annotated[Optional[int], typer.Option("--max-lora-rank", min=1, help="Largest adapter rank (default: the adapters' own; rounded up to one vLLM takes).")]
MaxLoras = Annotated[Optional[int], typer.Option("--max-loras", min=1, help="Adapters in one batch (default: the number of adapters).")]
MaxModelLen = Annotated[Optional[str], typer.Option("--max-model-len", help="Context length in tokens, or auto (default): the longest that fits in memory.")]
GpuMemory = Annotated[Optional[float], typer.Option("--gpu-memory-utilization", help="Share of each GPU's memory vLLM may use (vLLM's default 0.9).")]
TensorParallel = Annotated[Optional[int], typer.Option("--tensor-parallel-size", min=1, help="GPUs one model is split over.")]
DataParallel = Annotated[Optional[int], typer.Option("--data-parallel-size", min=1, help="Model replicas (one API server; adapters reach every replica).")]
ExpertParallel = Annotated[bool, typer.Option("--enable-expert-parallel", help="Spread a mixture-of-experts model's experts over the GPUs.")]
ToolCallParser = Annotated[Optional[str], typer.Option("--tool-call-parser", help="vLLM tool-call parser (default: from the checkpoint).")]
ReasoningParser = Annotated[Optional[str], typer.Option("--reasoning-parser", help="vLLM reasoning parser (default: from the checkpoint; none turns it off).")]
Device = Annotated[Optional[str], typer.Option("--device", help=default("serve.device", "auto, cuda or cpu (auto: cuda when torch sees a GPU)."))]


SERVING_FLAGS = ("adapter", "lora", "max_lora_rank", "max_loras", "max_model_len", "gpu_memory_utilization",
                 "tensor_parallel_size", "data_parallel_size", "enable_expert_parallel", "tool_call_parser",
                 "reasoning_parser", "device")
"""The parameter names above, as commands declare them: `{k: v for k, v in locals().items() if k in SERVING_FLAGS}`."""


def parse_max_model_len(text: str | None) -> int | Literal["auto"] | None:
    if text is None or text.strip().lower() == "auto":
        return "auto" if text is not None else None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"--max-model-len must be a positive number of tokens or auto, not {text!r}")
    return value


def server_config(model: str, extra_args: list[str], *, adapter: Sequence[str] = (), lora: bool = False,
                  max_lora_rank: int | None = None, max_loras: int | None = None, max_model_len: str | None = None,
                  gpu_memory_utilization: float | None = None, tensor_parallel_size: int | None = None,
                  data_parallel_size: int | None = None, enable_expert_parallel: bool = False,
                  tool_call_parser: str | None = None, reasoning_parser: str | None = None, device: str | None = None,
                  **rest: Any) -> ServerConfig:
    """`device` None: ServerConfig's default (commands pass `[serve] device`)."""
    if device is not None and device not in ("auto", "cuda", "cpu"):
        raise UsageError(f"--device must be auto, cuda or cpu, not {device!r}")
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        raise UsageError(f"--gpu-memory-utilization must be in (0, 1], not {gpu_memory_utilization}")
    return ServerConfig(model=model, adapters=parse_adapters(list(adapter)), lora=lora, max_lora_rank=max_lora_rank,
                        max_loras=max_loras, max_model_len=parse_max_model_len(max_model_len),
                        gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                        data_parallel_size=data_parallel_size, enable_expert_parallel=enable_expert_parallel,
                        tool_call_parser=tool_call_parser, reasoning_parser=reasoning_parser,
                        **({"device": device} if device else {}), extra_args=list(extra_args), **rest)  # type: ignore[arg-type]


def refuse_with_base_url(base_url: object, extra_args: list[str], **flags: Any) -> None:
    """Serving flags mean nothing when the user runs the server: say so instead of ignoring them."""
    defaults: dict[str, Any] = {"adapter": [], "lora": False, "enable_expert_parallel": False}
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value != defaults.get(name)]
    given += ["arguments after --"] if extra_args else []
    if base_url and given:
        raise UsageError(f"{', '.join(given)}: only for a server nightowl starts itself; with --base-url, drop them")


def announce(console: Console, server: VLLMServer, notes: bool = False) -> None:
    """The plan's warnings (and notes) on stderr before anything starts."""
    for line in server.plan.warnings:
        console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    for line in server.plan.notes if notes else []:
        console.print(f"[dim]note: {line}[/]", highlight=False, soft_wrap=True)
    if not notes:
        console.print(f"[dim]no --base-url: starting a vLLM server for {server.config.model} (this takes a while); "
                      f"log: {server.log_path}[/]", highlight=False, soft_wrap=True)


def log_path_for(out_dir: Path, run_id: str) -> Path:
    """Where `run` keeps the log of the server it starts: in the run's own directory."""
    return out_dir.expanduser().resolve() / run_id / "vllm.log"
