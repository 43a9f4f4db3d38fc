"""The tiny model: loads with transformers, tokenizer round-trips, chat template renders tools as hermes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

TOOLS = [{"type": "function", "function": {
    "name": "bash", "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]

CONVERSATION = [
    {"role": "system", "content": "You are a careful engineer."},
    {"role": "user", "content": "Fix the bug in calc.py."},
    {"role": "assistant", "content": "",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "bash", "arguments": '{"command": "cat calc.py"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "def add(a, b):\n    return a - b\n"},
    {"role": "assistant", "content": "The sign is wrong.",
     "tool_calls": [{"id": "call_2", "type": "function",
                     "function": {"name": "bash", "arguments": {"command": "sed -i s/-/+/ calc.py"}}},
                    {"id": "call_3", "type": "function",
                     "function": {"name": "bash", "arguments": '{"command": "python -m pytest -q"}'}}]},
    {"role": "tool", "tool_call_id": "call_2", "content": ""},
    {"role": "tool", "tool_call_id": "call_3", "content": "1 passed"},
    {"role": "assistant", "content": "Done."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def render(tokenizer, messages, tools=TOOLS, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def test_model_loads_and_generates(tiny_model_dir: Path, tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = model.config
    assert config.architectures == ["Qwen2ForCausalLM"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads) == (128, 2, 4, 2)
    assert config.tie_word_embeddings and config.max_position_embeddings >= 4096
    assert config.vocab_size == len(tokenizer) == 4096
    assert model.dtype == torch.float32
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = tokenizer("def f(x):\n    return x\n", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4 or out[0, -1].item() == model.generation_config.eos_token_id


def test_tokenizer_round_trips_and_keeps_tool_tokens_whole(tokenizer) -> None:
    text = 'import os\n\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la ü"}}\n</tool_call>\n'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>",
                  "<tool_response>", "</tool_response>"):
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]
    # vLLM decodes with skip_special_tokens=True; the hermes parser must still see the tool-call tags.
    assert "<tool_call>" in tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer.eos_token == "<|im_end|>"


def test_chat_template_renders_tools_calls_and_results(tokenizer) -> None:
    text = render(tokenizer, CONVERSATION)
    assert text.startswith("<|im_start|>system\nYou are a careful engineer.\n\n# Tools\n")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "bash", "arguments": {"command": "cat calc.py"}}\n'
            '</tool_call><|im_end|>\n') in text
    assert ('<|im_start|>assistant\nThe sign is wrong.\n<tool_call>\n{"name": "bash", "arguments": '
            '{"command": "sed -i s/-/+/ calc.py"}}\n</tool_call>\n<tool_call>\n{"name": "bash", "arguments": '
            '{"command": "python -m pytest -q"}}\n</tool_call><|im_end|>\n') in text
    assert ("<|im_start|>user\n<tool_response>\ndef add(a, b):\n    return a - b\n\n</tool_response><|im_end|>\n"
            in text)
    assert "<|im_start|>user\n<tool_response>\n1 passed\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\nDone.<|im_end|>\n")
    assert text.count("<|im_start|>system") == 1
    assert render(tokenizer, CONVERSATION[:2], add_generation_prompt=True).endswith(
        "Fix the bug in calc.py.<|im_end|>\n<|im_start|>assistant\n")


def test_chat_template_without_tools_or_system(tokenizer) -> None:
    assert render(tokenizer, CONVERSATION[1:2], tools=None) == "<|im_start|>user\nFix the bug in calc.py.<|im_end|>\n"
    assert render(tokenizer, CONVERSATION[:2], tools=None).startswith(
        "<|im_start|>system\nYou are a careful engineer.<|im_end|>\n<|im_start|>user\n")
    assert render(tokenizer, CONVERSATION[1:2]).startswith("<|im_start|>system\n# Tools\n")


def test_rendering_is_prefix_stable(tokenizer) -> None:
    """The agent appends to its history; every request must extend the previous prompt byte for byte (prefix
    cache), and the text trained on must equal what the server rendered while the agent ran."""
    for k in range(2, len(CONVERSATION)):
        shorter, longer = render(tokenizer, CONVERSATION[:k]), render(tokenizer, CONVERSATION[:k + 1])
        assert longer.startswith(shorter), f"rendering changed earlier turns when message {k} was added"
        if CONVERSATION[k]["role"] == "assistant":
            prompt = render(tokenizer, CONVERSATION[:k], add_generation_prompt=True)
            assert longer.startswith(prompt), f"generation prompt before message {k} is not a prefix"


def test_assistant_mask_covers_replies_and_end_tokens(tokenizer) -> None:
    out = tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    supervised = [i for i, m in zip(ids, mask) if m]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert supervised.count(im_end) == 3  # each assistant turn's end token is trained on
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in supervised
    assert tokenizer.convert_tokens_to_ids("<tool_response>") not in supervised
    assert 0 < len(supervised) < len(ids)


def test_refuses_non_empty_directory(tmp_path: Path) -> None:
    from training.finetune.tiny_model import build_tiny_model

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_model(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_pretraining_lowers_the_loss_changes_the_weights_and_records_the_curve(tmp_path: Path) -> None:
    """A few steps on a small source file, in place, with the measured loss written beside the weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.finetune.tiny_model import PRETRAIN_REPORT, build_tiny_model, pretrain

    corpus = tmp_path / "corpus.py"
    corpus.write_text("".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(3000)))
    model_dir = build_tiny_model(tmp_path / "tiny", corpus=corpus)
    before = AutoModelForCausalLM.from_pretrained(model_dir).model.norm.weight.clone()
    lines: list[str] = []
    report = pretrain(model_dir, corpus, steps=30, log=lines.append, window=64, batch=4)
    after = AutoModelForCausalLM.from_pretrained(model_dir).model.norm.weight
    assert not torch.equal(before, after)
    saved = json.loads((model_dir / PRETRAIN_REPORT).read_text())
    assert saved == report and saved["steps"] == 30 and [p["step"] for p in saved["loss"]] == [1, 30]
    assert saved["loss"][-1]["loss"] < saved["loss"][0]["loss"] - 1.0  # this corpus is very predictable
    assert lines[0].startswith("pretraining step 1/30: loss") and len(lines) == 2


def test_a_corpus_too_small_to_pretrain_on_is_one_clear_error(tmp_path: Path) -> None:
    from sandbox.errors import UserError
    from training.finetune.tiny_model import build_tiny_model, pretrain

    corpus = tmp_path / "corpus.py"
    corpus.write_text("def f(x):\n    return x\n" * 400)
    model_dir = build_tiny_model(tmp_path / "tiny", corpus=corpus)
    with pytest.raises(UserError, match="too small to pretrain on"):
        pretrain(model_dir, corpus, steps=2, window=100_000)
