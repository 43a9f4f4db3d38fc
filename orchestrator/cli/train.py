"""`nightowl export`, `nightowl train` and `nightowl adapter load|unload` (the learning loop's commands)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli.config import CWD_CONFIG_HELP, command_settings, default
from orchestrator.console import console, out, plain
from orchestrator.errors import UsageError


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:

    @app.command("export")
    @user_errors
    def export_command(
        sources: list[Path] = typer.Argument(..., help="Shift (--out of `nightowl shift`) and generate directories."),
        out_dir: Path = typer.Option(..., "--out", help="New dataset directory: train.jsonl, val.jsonl, dataset.json."),
        min_recall: Optional[float] = typer.Option(None, "--min-recall", help=default("export.min_recall", "Drop T2 rows below this line recall.")),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help=default("export.max_tokens", "Cut longer trajectories after the last assistant turn that fits (needs --tokenizer).")),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help=default("export.tokenizer", "Model directory or hub id whose tokenizer and chat template count tokens.")),
        val_share: Optional[float] = typer.Option(None, "--val-share", help=default("export.val_share", "Share of tasks (not rows) held out in val.jsonl.")),
        max_changed_lines: Optional[int] = typer.Option(None, "--max-changed-lines", help=default("export.max_changed_lines", "Drop rows whose patch changes more lines.")),
        min_fit_share: Optional[float] = typer.Option(None, "--min-fit-share", help=default("export.min_fit_share", "Keep a cut trajectory only if the kept part holds this share of its tokens.")),
        include_unsubmitted: bool = typer.Option(False, "--include-unsubmitted", help="Keep runs that did not submit."),
        allow_holdout_leak: bool = typer.Option(False, "--allow-holdout-leak", help="Export even if data post-dates a bench-history cut-off."),
        config: Optional[Path] = typer.Option(None, "--config", help=CWD_CONFIG_HELP),
    ) -> None:
        """Turn shift and generate outputs into a training dataset (split by task, deterministic)."""
        from typer.main import get_current_context

        from training.dataset.export import export

        report = export(export_options(get_current_context().params))
        for line in report.summary():
            out.print(line, highlight=False)

    @app.command("train")
    @user_errors
    def train_command(
        base: str = typer.Option(..., "--base", help="Base model directory or hub id (the served model)."),
        data: Optional[Path] = typer.Option(None, "--data", help="A dataset directory from `nightowl export`."),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="Adapter directory (re-run the same command to resume)."),
        epochs: Optional[float] = typer.Option(None, "--epochs", help=default("train.epochs")),
        lr: Optional[float] = typer.Option(None, "--lr", help=default("train.lr", "none: 2e-4 (LoRA), 1e-5 (--full).")),
        rank: Optional[int] = typer.Option(None, "--rank", help=default("train.rank", "LoRA rank (vLLM's --max-lora-rank must be at least this).")),
        max_length: Optional[int] = typer.Option(None, "--max-length", help=default("train.max_length", "Longer rows are cut after the last assistant turn that fits.")),
        full: bool = typer.Option(False, "--full", help="Full fine-tune instead of LoRA (writes a model directory)."),
        fsdp: bool = typer.Option(False, "--fsdp", help="Under torchrun with several processes: shard weights, gradients and optimizer state over them (FSDP2) instead of a replica each (DDP), for bases that do not fit on one device."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help=default("train.batch_size", "Rows per device per step.")),
        grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help=default("train.grad_accum")),
        save_steps: Optional[int] = typer.Option(None, "--save-steps", help=default("train.save_steps", "Checkpoint every N steps.")),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help=default("train.max_steps", "Stop after N steps (-1: the epochs).")),
        packing: Optional[str] = typer.Option(None, "--packing", help=default("train.packing", "auto, on or off.")),
        seed: Optional[int] = typer.Option(None, "--seed", help=default("train.seed")),
        gradient_checkpointing: Optional[str] = typer.Option(None, "--gradient-checkpointing",
                                                             help=default("train.gradient_checkpointing", "auto (off on CPU; on GPU off when the memory plan fits well without it), on or off.")),
        plan: bool = typer.Option(False, "--plan", help="Print the memory plan as JSON (from config.json; loads "
                                  "no weights) and exit; --data and --out are not needed."),
        plan_gpu_gib: Optional[float] = typer.Option(None, "--plan-gpu-gib", help="With --plan: plan for one GPU "
                                                     "with this much free memory (bf16), wherever this runs."),
        plan_processes: Optional[int] = typer.Option(None, "--plan-processes", min=1, help="With --plan: plan "
                                                     "for this many training processes (one per GPU under torchrun)."),
        ignore_plan: bool = typer.Option(False, "--ignore-plan", help="Train even when the memory plan says it will "
                                         "not fit."),
        memory_gib: Optional[float] = typer.Option(None, "--memory-gib", help=default("train.memory_gib", "Memory one training process may use "
                                                   "per device (none: what the device reports free).")),
        config: Optional[Path] = typer.Option(None, "--config", help=CWD_CONFIG_HELP),
    ) -> None:
        """Fine-tune BASE on DATA's assistant turns; writes a peft adapter vLLM loads as is."""
        from typer.main import get_current_context

        from training.finetune.train import train

        options = train_options(get_current_context().params)
        if plan:
            plain(print_plan(options, plan_gpu_gib, plan_processes))
            return
        if plan_gpu_gib is not None or plan_processes is not None:
            raise UsageError("--plan-gpu-gib and --plan-processes go with --plan")
        report = train(options, log=lambda line: console.print(line, highlight=False, soft_wrap=True))
        if report:
            out.print(report.summary(out_dir), highlight=False)

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


EXPORT_KEYS = ("min_recall", "max_tokens", "tokenizer", "val_share", "max_changed_lines", "min_fit_share")
"""`nightowl export`'s parameters that are settings: each is `export.<name>` in nightowl.toml, `--<name>` spelt with -."""
TRAIN_KEYS = ("epochs", "lr", "rank", "max_length", "batch_size", "grad_accum", "save_steps", "max_steps", "packing",
              "seed", "gradient_checkpointing", "memory_gib")
"""`nightowl train`'s, likewise under [train]."""


def export_options(flags: dict[str, Any]) -> Any:
    """The ExportOptions a `nightowl export` command line stands for (its parsed flags; nothing runs)."""
    from pydantic import ValidationError

    from training.dataset.export import ExportOptions

    s = command_settings(flags, {name: (f"export.{name}", "--" + name.replace("_", "-")) for name in EXPORT_KEYS},
                         None).export
    try:
        return ExportOptions(sources=flags["sources"], out=flags["out_dir"], min_recall=s.min_recall,
                             max_tokens=s.max_tokens, tokenizer=s.tokenizer,
                             val_share=s.val_share, max_changed_lines=s.max_changed_lines,
                             min_fit_share=s.min_fit_share, submitted_only=not flags["include_unsubmitted"],
                             allow_holdout_leak=flags["allow_holdout_leak"])
    except ValidationError as e:
        raise UsageError(one_line(e)) from None


def train_options(flags: dict[str, Any]) -> Any:
    """The TrainOptions a `nightowl train` command line stands for (its parsed flags; nothing runs). With --plan,
    --data and --out may be missing."""
    from pydantic import ValidationError

    from training.finetune.train import TrainOptions

    if flags["gradient_checkpointing"] not in (None, "auto", "on", "off"):
        raise UsageError(f"--gradient-checkpointing must be auto, on or off, not {flags['gradient_checkpointing']!r}")
    s = command_settings(flags, {name: (f"train.{name}", "--" + name.replace("_", "-")) for name in TRAIN_KEYS},
                         None).train
    checkpointing = {"auto": None, "on": True, "off": False}[s.gradient_checkpointing]
    data, out_dir = flags["data"], flags["out_dir"]
    if not flags["plan"] and (data is None or out_dir is None):
        raise UsageError("give --data (a dataset from `nightowl export`) and --out (the adapter directory), "
                         "or --plan")
    try:
        return TrainOptions(base=flags["base"], data=data or Path("."), out=out_dir or Path("."),
                            epochs=s.epochs, lr=s.lr, rank=s.rank, max_length=s.max_length,
                            full=flags["full"], batch_size=s.batch_size, grad_accum=s.grad_accum,
                            save_steps=s.save_steps, max_steps=s.max_steps, packing=s.packing,
                            seed=s.seed, gradient_checkpointing=checkpointing,
                            ignore_plan=flags["ignore_plan"], memory_gib=s.memory_gib, fsdp=flags["fsdp"])
    except ValidationError as e:
        raise UsageError(one_line(e)) from None


def print_plan(options: Any, gpu_gib: float | None, processes: int | None = None) -> str:
    """The plan as one JSON object, with the option changes that would fit when it does not."""
    from orchestrator.pipelines.train_plan import PlanRequest, plan_training

    return plan_training(PlanRequest(train=options, gpu_gib=gpu_gib, processes=processes)).text


def one_line(error: Any) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "input"
    return f"{where}: {first.get('msg', str(error))}"
