"""`plan_training`: the memory plan of a `train` run (from config.json; no weights loaded), with the option changes
that would fit when it does not, and whether the installed vLLM could serve the adapter.

`nightowl train --plan` prints it; the flywheel asks for it in a child process on the training GPUs (it looks at
the devices, which must not tie the flywheel's own process to a GPU).
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from orchestrator.errors import UsageError
from training.finetune.train import TrainOptions


class PlanRequest(BaseModel):
    train: TrainOptions
    gpu_gib: float | None = None
    """Plan for one GPU with this much free memory (bf16), wherever this runs; None: the devices here."""
    processes: int | None = None
    """Plan for this many training processes (one per GPU under torchrun); None: this launch's."""


class TrainPlan(BaseModel):
    text: str
    """The plan as one JSON object (what `nightowl train --plan` prints)."""

    @property
    def plan(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]


def plan_training(request: PlanRequest) -> TrainPlan:
    from training.finetune.memory_plan import PlanError, plan, suggestions
    from training.finetune.train import pick_device, plan_settings

    options, gpu_gib = request.train, request.gpu_gib
    device = "cuda" if gpu_gib is not None else pick_device()
    settings = plan_settings(options, device, request.processes)
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
    return TrainPlan(text=estimate.to_json())


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
