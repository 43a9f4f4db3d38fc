"""`nightowl export`, `nightowl train` and `nightowl adapter load|unload` (the learning loop's commands)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.errors import UsageError


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    console = Console(stderr=True)
    out = Console()

    @app.command("export")
    @user_errors
    def export_command(
        sources: list[Path] = typer.Argument(..., help="Shift (--out of `nightowl shift`) and generate directories."),
        out_dir: Path = typer.Option(..., "--out", help="New dataset directory: train.jsonl, val.jsonl, dataset.json."),
        min_recall: Optional[float] = typer.Option(None, "--min-recall", help="Drop T2 rows below this line recall."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Cut longer trajectories after the last assistant turn that fits (needs --tokenizer)."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Model directory or hub id whose tokenizer and chat template count tokens."),
        val_share: float = typer.Option(0.1, "--val-share", help="Share of tasks (not rows) held out in val.jsonl."),
        max_changed_lines: Optional[int] = typer.Option(None, "--max-changed-lines", help="Drop rows whose patch changes more lines."),
        min_fit_share: float = typer.Option(0.5, "--min-fit-share", help="Keep a cut trajectory only if the kept part holds this share of its tokens."),
        include_unsubmitted: bool = typer.Option(False, "--include-unsubmitted", help="Keep runs that did not submit."),
        allow_holdout_leak: bool = typer.Option(False, "--allow-holdout-leak", help="Export even if data post-dates a bench-history cut-off."),
    ) -> None:
        """Turn shift and generate outputs into a training dataset (split by task, deterministic)."""
        from pydantic import ValidationError

        from training.dataset.export import ExportOptions, export

        try:
            options = ExportOptions(sources=sources, out=out_dir, min_recall=min_recall, max_tokens=max_tokens,
                                    tokenizer=tokenizer, val_share=val_share, max_changed_lines=max_changed_lines,
                                    min_fit_share=min_fit_share, submitted_only=not include_unsubmitted,
                                    allow_holdout_leak=allow_holdout_leak)
        except ValidationError as e:
            raise UsageError(one_line(e)) from None
        report = export(options)
        out.print(f"{report.rows['train']} train + {report.rows['val']} val rows from {report.candidates} "
                  f"trajectories in {report.seconds:.1f} s -> {report.out}", highlight=False)
        if report.dropped:
            out.print("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())), highlight=False)
        out.print(f"truncated: {report.truncated}; scrubbed secrets: "
                  + (", ".join(f"{k} {v}" for k, v in sorted(report.scrubbed.items())) or "none"), highlight=False)

    @app.command("train")
    @user_errors
    def train_command(
        base: str = typer.Option(..., "--base", help="Base model directory or hub id (the served model)."),
        data: Optional[Path] = typer.Option(None, "--data", help="A dataset directory from `nightowl export`."),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="Adapter directory (re-run the same command to resume)."),
        epochs: float = typer.Option(1.0, "--epochs"),
        lr: Optional[float] = typer.Option(None, "--lr", help="Default 2e-4 (LoRA), 1e-5 (--full)."),
        rank: int = typer.Option(16, "--rank", help="LoRA rank (vLLM's --max-lora-rank must be at least this)."),
        max_length: int = typer.Option(32768, "--max-length", help="Longer rows are cut after the last assistant turn that fits."),
        full: bool = typer.Option(False, "--full", help="Full fine-tune instead of LoRA (writes a model directory)."),
        batch_size: int = typer.Option(1, "--batch-size", help="Rows per device per step."),
        grad_accum: int = typer.Option(1, "--grad-accum"),
        save_steps: int = typer.Option(50, "--save-steps", help="Checkpoint every N steps."),
        max_steps: int = typer.Option(-1, "--max-steps", help="Stop after N steps (default: the epochs)."),
        packing: str = typer.Option("auto", "--packing", help="auto, on or off."),
        seed: int = typer.Option(0, "--seed"),
        gradient_checkpointing: str = typer.Option("auto", "--gradient-checkpointing",
                                                   help="auto (off on CPU; on GPU off when the memory plan fits well without it), on or off."),
        plan: bool = typer.Option(False, "--plan", help="Print the memory plan as JSON (from config.json; loads "
                                  "no weights) and exit; --data and --out are not needed."),
        plan_gpu_gib: Optional[float] = typer.Option(None, "--plan-gpu-gib", help="With --plan: plan for one GPU "
                                                     "with this much free memory (bf16), wherever this runs."),
        ignore_plan: bool = typer.Option(False, "--ignore-plan", help="Train even when the memory plan says it will "
                                         "not fit."),
        memory_gib: Optional[float] = typer.Option(None, "--memory-gib", help="Memory one training process may use "
                                                   "per device (default: what the device reports free)."),
    ) -> None:
        """Fine-tune BASE on DATA's assistant turns; writes a peft adapter vLLM loads as is."""
        from pydantic import ValidationError

        from training.finetune.train import TrainOptions, train

        checkpointing = {"auto": None, "on": True, "off": False}.get(gradient_checkpointing, "bad")
        if checkpointing == "bad":
            raise UsageError(f"--gradient-checkpointing must be auto, on or off, not {gradient_checkpointing!r}")
        if not plan and (data is None or out_dir is None):
            raise UsageError("give --data (a dataset from `nightowl export`) and --out (the adapter directory), "
                             "or --plan")
        try:
            options = TrainOptions(base=base, data=data or Path("."), out=out_dir or Path("."), epochs=epochs, lr=lr,
                                   rank=rank, max_length=max_length, full=full, batch_size=batch_size,
                                   grad_accum=grad_accum, save_steps=save_steps, max_steps=max_steps,
                                   packing=packing, seed=seed, gradient_checkpointing=checkpointing,
                                   ignore_plan=ignore_plan, memory_gib=memory_gib)
        except ValidationError as e:
            raise UsageError(one_line(e)) from None
        if plan:
            typer.echo(print_plan(options, plan_gpu_gib))
            return
        if plan_gpu_gib is not None:
            raise UsageError("--plan-gpu-gib goes with --plan")
        report = train(options, log=lambda line: console.print(line, highlight=False, soft_wrap=True))
        if report:
            out.print(f"{report['mode']} fine-tune done: {report['steps']} steps, "
                      f"{report['tokens_per_second'] or 0:.0f} tokens/s, final loss "
                      f"{report['loss'][-1]['loss'] if report['loss'] else float('nan'):.4f} -> {out_dir}",
                      highlight=False)

    adapter = typer.Typer(no_args_is_help=True, help="Load or unload a LoRA adapter in a running vLLM server.")
    app.add_typer(adapter, name="adapter")

    @adapter.command("load")
    @user_errors
    def adapter_load(name: str = typer.Argument(..., help="New name to serve it under (use a new one per round)."),
                     path: Path = typer.Argument(..., help="Adapter directory from `nightowl train`."),
                     base_url: str = typer.Option(..., "--base-url", help="The server, e.g. http://127.0.0.1:8000/v1.")) -> None:
        """Load an adapter at runtime; requests then use model=NAME."""
        from orchestrator.serving.vllm_server import load_adapter

        if not (path / "adapter_config.json").is_file():
            raise UsageError(f"{path} has no adapter_config.json: give an adapter directory from `nightowl train`")
        load_adapter(base_url, name, path)
        out.print(f"loaded {path} as {name!r}: use model={name} with {base_url}", highlight=False)

    @adapter.command("unload")
    @user_errors
    def adapter_unload(name: str = typer.Argument(..., help="The adapter's served name."),
                       base_url: str = typer.Option(..., "--base-url")) -> None:
        """Unload a runtime-loaded adapter."""
        from orchestrator.serving.vllm_server import unload_adapter

        unload_adapter(base_url, name)
        out.print(f"unloaded {name!r}", highlight=False)


def print_plan(options: Any, gpu_gib: float | None) -> str:
    """The plan as one JSON object, with the option changes that would fit when it does not."""
    from training.finetune.memory_plan import PlanError, plan, suggestions
    from training.finetune.train import pick_device, plan_settings

    device = "cuda" if gpu_gib is not None else pick_device()
    settings = plan_settings(options, device)
    devices = [{"device": "cuda:0", "name": "planned GPU", "free_gib": gpu_gib, "total_gib": gpu_gib}] \
        if gpu_gib is not None else None
    try:
        estimate = plan(options.base, settings, devices)
        if estimate.fits is False:
            estimate.suggestions = suggestions(options.base, settings, estimate.devices)
        if not options.full:
            estimate.vllm_serves_lora = vllm_supports_lora(estimate.architecture)
            if estimate.vllm_serves_lora is False:
                estimate.notes.append(f"the installed vLLM serves no LoRA adapters for {estimate.architecture}: "
                                      "train with --full")
    except PlanError as e:
        raise UsageError(str(e)) from None
    return estimate.to_json()


def vllm_supports_lora(arch: str) -> bool | None:
    """Whether the installed vLLM serves LoRA for `arch` (None: vLLM is not installed or does not know it)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        from vllm.model_executor.models import ModelRegistry
        from vllm.model_executor.models.interfaces import supports_lora

        cls = ModelRegistry._try_load_model_cls(arch)
    except Exception:  # an internal API: when it moves, vLLM checks the adapter at load time instead
        return None
    return None if cls is None else bool(supports_lora(cls))


def one_line(error: Any) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "input"
    return f"{where}: {first.get('msg', str(error))}"
