"""`nightowl model import`: a GGUF file becomes a checkpoint transformers loads and `nightowl serve` accepts; bad
input gets one line and exit code 2, and nothing half-written is left behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.chat_template import is_tools_wrapper, renders_tools
from tests.helpers import nightowl, nightowl_in_process
from tests.training.gguf_files import SMOLLM2_TEMPLATE, write_tiny_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".importing-" in p.name)


def test_import_writes_a_checkpoint_transformers_loads_and_serve_accepts(tiny_gguf: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "models" / "tiny"
    result = nightowl_in_process("model", "import", tiny_gguf, "--out", out, "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in result.output and "LlamaForCausalLM" in result.output
    assert "wrapped" in result.output and "tool-call parser hermes" in result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "nightowl_import.json"} <= {
        p.name for p in out.iterdir()}
    assert leftovers(out.parent) == []

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.architectures == ["LlamaForCausalLM"] and model.dtype.is_floating_point
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 2 and tokenizer.eos_token == "<|im_end|>"
    # generation ends where llama.cpp ends it: the GGUF's eos, and <|endoftext|> beside it
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 0]
    # SmolLM2's template does not render tools: the saved one is the hermes-style wrapper around it
    assert not renders_tools(SMOLLM2_TEMPLATE)
    assert is_tools_wrapper(tokenizer.chat_template) and tokenizer.chat_template.endswith(SMOLLM2_TEMPLATE)
    tools = [{"type": "function", "function": {"name": "submit", "description": "Finish.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tools=tools, tokenize=False)
    assert '"name": "submit"' in text and "<tool_call>" in text

    report = json.loads((out / "nightowl_import.json").read_text())
    assert report["gguf"]["architecture"] == "llama" and report["gguf"]["file_type"] == "ALL_F32"
    assert report["architecture"] == "LlamaForCausalLM" and report["dtype"] == "float32"
    assert report["chat_template"]["original"] == SMOLLM2_TEMPLATE
    assert len(report["sha256"]) == 64 and report["parameters"] > 0
    assert report["stop_tokens"] == {"2": "<|im_end|>", "0": "<|endoftext|>"}

    served = nightowl_in_process("serve", "--model", out, "--dry-run", "--device", "cpu")
    assert served.exit_code == 0, served.output
    assert "--tool-call-parser" in served.output and "hermes" in served.output


def test_a_directory_holding_one_gguf_file_is_imported(tiny_gguf: Path, tmp_path: Path) -> None:
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(tiny_gguf.read_bytes())
    (folder / "README.md").write_text("a model\n")
    out = tmp_path / "out"
    out.mkdir()  # an existing empty directory is fine
    result = nightowl_in_process("model", "import", folder, "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_bad_input_gets_one_line_exit_2_and_leaves_nothing(tiny_gguf: Path, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("not a model\n")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:300])
    unsupported = write_tiny_gguf(tmp_path / "rwkv.gguf", architecture="rwkv7")
    empty_dir, two, split = tmp_path / "empty", tmp_path / "two", tmp_path / "split"
    for d in (empty_dir, two, split):
        d.mkdir()
    (two / "a.gguf").write_bytes(b"GGUF")
    (two / "b.gguf").write_bytes(b"GGUF")
    (split / "m-00001-of-00002.gguf").write_bytes(b"GGUF")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine\n")
    outs = tmp_path / "outs"
    outs.mkdir()
    cases = [
        ([tmp_path / "missing.gguf"], "does not exist"),
        ([text_file], "is not a GGUF file"),
        ([truncated], "cannot be read"),
        ([unsupported], "architecture 'rwkv7' is not one transformers' GGUF loader reads"),
        ([empty_dir], "holds no .gguf file"),
        ([two], "holds 2 GGUF files"),
        ([split], "split into parts"),
        ([tiny_gguf, "--dtype", "float16"], "--dtype must be bfloat16 or float32"),
    ]
    for n, (args, message) in enumerate(cases):
        result = nightowl_in_process("model", "import", *args, "--out", outs / f"o{n}")
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (args, result.output)
        assert not (outs / f"o{n}").exists()
    result = nightowl_in_process("model", "import", tiny_gguf, "--out", taken)
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert sorted(p.name for p in taken.iterdir()) == ["keep.txt"]
    assert leftovers(outs) == [] and leftovers(tmp_path) == []


def test_an_architecture_vllm_does_not_serve_is_refused(tiny_gguf: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.serving.model_import as model_import

    monkeypatch.setattr(model_import, "vllm_serves", lambda cls: (False, f"vLLM 9.9 does not serve {cls}"))
    result = nightowl_in_process("model", "import", tiny_gguf, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "vLLM 9.9 does not serve LlamaForCausalLM" in result.output and not (tmp_path / "out").exists()


def test_a_failure_during_conversion_leaves_nothing_half_written(tiny_gguf: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.serving.model_import as model_import

    real_convert = model_import.convert

    def convert_then_fail(header, directory, dtype):
        real_convert(header, directory, dtype)
        assert (directory / "model.safetensors").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(model_import, "convert", convert_then_fail)
    with pytest.raises(KeyboardInterrupt):
        model_import.import_model(model_import.ImportOptions(source=tiny_gguf, out=tmp_path / "out"), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_gguf_without_a_chat_template_is_imported_and_says_so(tmp_path: Path) -> None:
    base_model = write_tiny_gguf(tmp_path / "base.gguf", chat_template=None)
    result = nightowl_in_process("model", "import", base_model, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "chat template: none: the GGUF has no chat template" in result.output
    assert not (tmp_path / "out" / "chat_template.jinja").exists()


def test_a_checkpoint_whose_template_lacks_tools_is_imported_wrapped(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A hub download or a local checkpoint (here the tiny model given SmolLM2's template, which has no `tools`):
    the import saves the same weights with the hermes-style wrapper, as a GGUF import does."""
    import shutil

    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    checkpoint = tmp_path / "downloaded"
    shutil.copytree(tiny_model_dir, checkpoint)
    (checkpoint / "chat_template.jinja").write_text(SMOLLM2_TEMPLATE, encoding="utf-8")
    out = tmp_path / "imported"
    result = nightowl_in_process("model", "import", checkpoint, "--out", out, "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "a checkpoint directory" in result.output and "wrapped" in result.output, result.output
    template = AutoTokenizer.from_pretrained(out).chat_template
    assert is_tools_wrapper(template) and template.endswith(SMOLLM2_TEMPLATE)
    before, after = load_file(checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(before[k].float().equal(after[k].float()) for k in before)
    report = json.loads((out / "nightowl_import.json").read_text())
    assert report["source"] == str(checkpoint) and report["hub"] is False and "gguf" not in report
    assert report["chat_template"]["original"] == SMOLLM2_TEMPLATE
    assert (checkpoint / "chat_template.jinja").read_text(encoding="utf-8") == SMOLLM2_TEMPLATE  # source untouched


def test_a_hub_id_the_hub_cannot_give_gets_one_line(tmp_path: Path) -> None:
    # HF_HUB_OFFLINE: what a machine without the hub sees, without waiting out huggingface_hub's retries
    proc = nightowl("model", "import", "HuggingFaceTB/SmolLM2-135M-Instruct", "--out", tmp_path / "out",
                    env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "HuggingFaceTB/SmolLM2-135M-Instruct" in lines[0] and "model hub" in lines[0], lines
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists() and leftovers(tmp_path) == []
