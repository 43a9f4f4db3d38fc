"""Parsers from the checkpoint: each family's fixture checkpoint, adapters, hub ids, overrides, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.serving.checkpoints import (
    ALLOWED_LORA_RANKS,
    FAMILIES,
    CheckpointError,
    allowed_lora_rank,
    read_adapter,
    resolve_checkpoint,
)
from orchestrator.serving.vllm_server import ServerConfig, ServingError, plan_server
from tests.orchestrator.serving.checkpoint_fixtures import TEMPLATES, make_adapter, make_checkpoint

FAMILY_CASES = [
    # directory name, model_type, template key, tool parser, reasoning parser, template renders reasoning
    ("Qwen3-Coder-30B-A3B-Instruct", "qwen3_moe", "qwen3-coder", "qwen3_coder", None, False),
    ("GLM-4.6", "glm4_moe", "glm", "glm45", "glm45", True),
    ("Llama-3.3-70B-Instruct", "llama", "llama3", "llama3_json", None, False),
    ("DeepSeek-V3-0324", "deepseek_v3", "deepseek-v3", "deepseek_v3", None, False),
    ("DeepSeek-V3.1", "deepseek_v3", "deepseek-v3.1", "deepseek_v31", "deepseek_v3", False),
    ("gpt-oss-120b", "gpt_oss", "gpt-oss", "openai", "openai_gptoss", False),
    ("SERA-8B", "qwen3", "hermes", "hermes", None, False),
    ("Qwen3-8B", "qwen3", "qwen3", "hermes", None, True),
]


def plan(model: str | Path, **config: object):
    return plan_server(ServerConfig(model=str(model), **config), "cuda", 8000, launcher=["vllm", "serve"])


@pytest.mark.parametrize("name,model_type,template,tool,reasoning,in_history", FAMILY_CASES)
def test_each_family_gets_its_parsers(tmp_path: Path, name: str, model_type: str, template: str, tool: str,
                                      reasoning: str | None, in_history: bool) -> None:
    # A neutral directory name: the template must decide, not the name.
    model = make_checkpoint(tmp_path / "ckpt", model_type, TEMPLATES[template])
    p = plan(model)
    assert (p.tool_call_parser, p.reasoning_parser, p.reasoning_in_history) == (tool, reasoning, in_history)
    assert p.argv[p.argv.index("--tool-call-parser") + 1] == tool
    assert ("--reasoning-parser" in p.argv) == (reasoning is not None)
    assert any("from its chat template" in n for n in p.notes)
    assert not p.warnings


@pytest.mark.parametrize("where", ["chat_template.jinja", "named", "tokenizer_config.json"])
def test_template_is_found_where_transformers_saves_it(tmp_path: Path, where: str) -> None:
    model = make_checkpoint(tmp_path / "m", "glm4_moe", TEMPLATES["glm"], where=where)
    assert "<arg_key>" in (resolve_checkpoint(str(model)).chat_template or "")
    assert plan(model).tool_call_parser == "glm45"


def test_without_a_template_the_model_type_then_the_default_decide(tmp_path: Path) -> None:
    assert plan(make_checkpoint(tmp_path / "a", "llama", None)).tool_call_parser == "llama3_json"
    assert plan(make_checkpoint(tmp_path / "b", "gpt_oss", None)).reasoning_parser == "openai_gptoss"
    default = plan(make_checkpoint(tmp_path / "c", "mistral", None))
    assert (default.tool_call_parser, default.reasoning_parser) == ("hermes", None)
    assert any("no other family matched" in n for n in default.notes)


def test_qwen25_coder_gets_a_warning(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "Qwen2.5-Coder-7B-Instruct", "qwen2", TEMPLATES["hermes"])
    p = plan(model)
    assert p.tool_call_parser == "hermes"
    assert len(p.warnings) == 1 and "--tool-choice required" in p.warnings[0]


def test_overrides_win(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "m", "glm4_moe", TEMPLATES["glm"])
    p = plan(model, tool_call_parser="hermes", reasoning_parser="qwen3")
    assert (p.tool_call_parser, p.reasoning_parser) == ("hermes", "qwen3")
    assert plan(model, reasoning_parser="none").reasoning_parser is None
    with pytest.raises(ServingError, match="not a parser of this vLLM; it has: .*glm45"):
        plan(model, tool_call_parser="glm-4.6")


def test_family_parser_names_exist_in_vllm() -> None:
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    tools, reasoning = set(ToolParserManager.list_registered()), set(ReasoningParserManager.list_registered())
    for family in FAMILIES:
        assert family.tool_call_parser in tools, family
        assert family.reasoning_parser is None or family.reasoning_parser in reasoning, family


def test_adapter_directory_resolves_to_its_base(tmp_path: Path) -> None:
    base = make_checkpoint(tmp_path / "base", "glm4_moe", TEMPLATES["glm"])
    adapter = make_adapter(tmp_path / "round1", str(base), r=24)
    p = plan(adapter)
    assert (p.tool_call_parser, p.reasoning_parser, p.client_model) == ("glm45", "glm45", "round1")
    assert p.argv[2] == str(base) and p.argv[p.argv.index("--served-model-name") + 1] == str(base)
    assert p.argv[p.argv.index("--lora-modules") + 1] == f"round1={adapter.resolve()}"
    assert p.argv[p.argv.index("--max-lora-rank") + 1] == "32"  # 24 rounded up to an allowed rank
    assert plan(adapter, served_model_name="mine").client_model == "mine"


def test_adapter_of_an_unresolvable_hub_base_uses_the_base_name(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    adapter = make_adapter(tmp_path / "lora", "Qwen/Qwen3-Coder-30B-A3B-Instruct", r=8)
    p = plan(adapter)
    assert p.tool_call_parser == "qwen3_coder" and p.argv[2] == "Qwen/Qwen3-Coder-30B-A3B-Instruct"
    assert any("HF_HUB_OFFLINE" in n for n in p.notes)


def test_hub_id_that_cannot_be_resolved_uses_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    checkpoint = resolve_checkpoint("zai-org/GLM-4.6")
    assert checkpoint.source == "name only" and checkpoint.config == {}
    p = plan("zai-org/GLM-4.6")
    assert (p.tool_call_parser, p.reasoning_parser) == ("glm45", "glm45")
    assert any("parsers are chosen from the name" in n for n in p.notes)


def test_hub_id_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id in the Hugging Face cache layout is read from there, as transformers would."""
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--acme--coder" / "snapshots" / ("0" * 40)
    make_checkpoint(snapshot, "glm4_moe", TEMPLATES["glm"])
    (tmp_path / "hub" / "models--acme--coder" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--coder" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    checkpoint = resolve_checkpoint("acme/coder")
    assert checkpoint.source == "hub cache" and checkpoint.model_type == "glm4_moe"
    assert plan("acme/coder").tool_call_parser == "glm45"


@pytest.mark.parametrize("model,message", [
    ("/tmp/nightowl-no-such-dir", "no such directory, and not a hub id"),
    ("./no/such/dir", "no such directory, and not a hub id"),
])
def test_missing_directory_is_one_line(model: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as info:
        resolve_checkpoint(model)
    assert "\n" not in str(info.value)


def test_directory_without_config_and_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="has no config.json"):
        resolve_checkpoint(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"\x00")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(str(tmp_path / "weights.bin"))


def test_rank_rounding_and_refusal(tmp_path: Path) -> None:
    assert [allowed_lora_rank(r, "x") for r in (1, 2, 8, 9, 64, 65, 300, 320, 321, 512)] == \
        [1, 8, 8, 16, 64, 128, 320, 320, 512, 512]
    with pytest.raises(CheckpointError, match="rank 513.*up to 512"):
        allowed_lora_rank(513, "x")
    assert read_adapter("a", str(make_adapter(tmp_path / "a", "b", r=8, rank_pattern={"q_proj": 48}))).rank == 48
    with pytest.raises(CheckpointError, match="adapter big .*rank 1024"):
        read_adapter("big", str(make_adapter(tmp_path / "big", "b", r=1024)))
    with pytest.raises(CheckpointError, match="no positive integer rank"):
        read_adapter("bad", str(make_adapter(tmp_path / "bad", "b", r="sixteen")))
    with pytest.raises(CheckpointError, match="does not exist"):
        read_adapter("gone", str(tmp_path / "gone"))
    assert ALLOWED_LORA_RANKS[-1] == 512


QWEN3_CODER_30B = {"num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                   "hidden_size": 2048, "max_position_embeddings": 262144, "num_experts": 128,
                   "torch_dtype": "bfloat16"}
"""The attention shape of Qwen3-Coder-30B-A3B-Instruct's published config.json."""


def test_qwen3_coder_moe_gets_no_lora_and_an_auto_context(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "Qwen3-Coder-30B-A3B-Instruct", "qwen3_moe", TEMPLATES["qwen3-coder"],
                            **QWEN3_CODER_30B)
    p = plan(model)
    assert "--enable-lora" not in p.argv and p.argv[p.argv.index("--max-model-len") + 1] == "auto"
    assert "KV cache 96 KiB per token (from config.json): the full 262,144-token window needs 24.0 GiB" in \
        " ".join(p.notes)
    fixed = plan(model, max_model_len=65536)
    assert fixed.argv[fixed.argv.index("--max-model-len") + 1] == "65536"
    assert not any("`auto`" in n for n in fixed.notes)


def test_kv_cache_per_token_for_latent_attention_and_float32() -> None:
    from orchestrator.serving.checkpoints import kv_cache_bytes_per_token

    deepseek = {"num_hidden_layers": 61, "num_attention_heads": 128, "kv_lora_rank": 512, "qk_rope_head_dim": 64}
    assert kv_cache_bytes_per_token(deepseek) == 61 * 576 * 2
    tiny = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 128,
            "dtype": "float32"}
    assert kv_cache_bytes_per_token(tiny) == 2 * 2 * 2 * 32 * 4
    assert kv_cache_bytes_per_token({"model_type": "x"}) is None


def test_reasoning_in_history_without_a_readable_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unresolved GLM hub id still gets its reasoning sent back (GLM's template renders it); others do not."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert plan("zai-org/GLM-4.6").reasoning_in_history
    assert not plan("Qwen/Qwen3-Coder-30B-A3B-Instruct").reasoning_in_history
