"""Rendering matches what vLLM gives the template; the assistant-only mask is exact and its check catches errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.helpers import TOOLS, call, conversation
from training.dataset.mask import Encoded, MaskError, encode, verify_masks
from training.dataset.render import TemplateError, fold_reasoning, render, serving_messages, serving_tools

# Tool calls with compact and with invalid JSON arguments, several calls in one turn, several tool results in a
# row, reasoning, empty content: the cases where a naive renderer drifts from the server.
MULTI_TURN = [
    {"role": "system", "content": "You are a careful engineer."},
    {"role": "user", "content": "Fix the bug in calc.py."},
    {"role": "assistant", "content": None, "reasoning_content": "Look first.",
     "tool_calls": [call("c1", "bash", '{"command":"cat calc.py"}')]},
    {"role": "tool", "tool_call_id": "c1", "content": "def add(a, b):\n    return a - b\n"},
    {"role": "assistant", "content": "The sign is wrong.",
     "tool_calls": [call("c2", "bash", '{"command": "sed -i s/-/+/ calc.py"}'),
                    call("c3", "bash", '{"command": "python -m pytest -q", }')]},
    {"role": "tool", "tool_call_id": "c2", "content": ""},
    {"role": "tool", "tool_call_id": "c3", "content": "1 passed ✓"},
    {"role": "assistant", "content": "Done.", "tool_calls": [call("c4", "submit", "")]},
]
BARE_TOOLS = [{"type": "function", "function": {"name": "submit", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_serving_view_matches_what_vllm_hands_the_template() -> None:
    view = serving_messages(MULTI_TURN)
    assert view[2] == {"role": "assistant", "content": "", "reasoning": "Look first.",
                       "reasoning_content": "Look first.",
                       "tool_calls": [{"id": "c1", "type": "function",
                                       "function": {"name": "bash", "arguments": {"command": "cat calc.py"}}}]}
    assert view[4]["tool_calls"][1]["function"]["arguments"] == {}  # invalid JSON: vLLM coerces to {}
    assert view[7]["tool_calls"][0]["function"]["arguments"] == {}  # empty string: {}
    assert view[5] == {"role": "tool", "content": "", "tool_call_id": "c2"}
    assert MULTI_TURN[2]["tool_calls"][0]["function"]["arguments"] == '{"command":"cat calc.py"}'  # input untouched
    assert serving_tools(BARE_TOOLS) == [{"type": "function", "function": {
        "name": "submit", "description": None, "parameters": {"type": "object"}}}]


def test_render_is_the_template_applied_to_the_serving_view(tokenizer) -> None:
    text = render(tokenizer, MULTI_TURN, TOOLS + BARE_TOOLS)
    # compact arguments come out re-serialised, as the server rendered them while the agent ran
    assert '<tool_call>\n{"name": "bash", "arguments": {"command": "cat calc.py"}}\n</tool_call>' in text
    assert '{"name": "bash", "arguments": {}}' in text and '"description": null' in text
    assert "<tool_response>\n1 passed ✓\n</tool_response>" in text
    assert text == tokenizer.apply_chat_template(serving_messages(MULTI_TURN), tools=serving_tools(TOOLS + BARE_TOOLS),
                                                 tokenize=False)


def test_mask_covers_exactly_the_assistant_replies(tokenizer) -> None:
    messages = conversation("mask", turns=3)
    row = encode(tokenizer, messages, TOOLS)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    runs, current = [], []
    for tok, sup in zip(row.input_ids, row.supervised):
        if sup:
            current.append(tok)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    expected = []
    for m in messages:
        if m["role"] == "assistant":
            fn = m["tool_calls"][0]["function"]
            args = json.dumps(json.loads(fn["arguments"]))
            expected.append(f'{m["content"]}\n<tool_call>\n{{"name": "{fn["name"]}", "arguments": {args}}}\n'
                            "</tool_call><|im_end|>")
    assert runs == expected
    assert [t for t, s in zip(row.input_ids, row.supervised) if s].count(im_end) == row.assistant_turns == 3
    # the template's own {% generation %} markers (transformers' assistant mask) agree token for token
    marked = tokenizer.apply_chat_template(serving_messages(messages), tools=serving_tools(TOOLS), tokenize=True,
                                           return_dict=True, return_assistant_tokens_mask=True)
    assert marked["input_ids"] == row.input_ids
    assert [bool(m) for m in marked["assistant_masks"]] == row.supervised
    report = verify_masks(tokenizer, [row])
    assert report.supervised_end_tokens == 3 and 0 < report.share < 1


def test_mask_check_catches_every_kind_of_wrong_mask(tokenizer) -> None:
    good = encode(tokenizer, MULTI_TURN, TOOLS)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    response = tokenizer.convert_tokens_to_ids("<tool_response>")

    def broken(change) -> Encoded:
        sup = list(good.supervised)
        change(sup)
        return Encoded(good.input_ids, sup, good.assistant_turns)

    with pytest.raises(MaskError, match="no token is supervised"):
        verify_masks(tokenizer, [Encoded(good.input_ids, [False] * len(good.input_ids), 0)])
    last_end = max(i for i, (t, s) in enumerate(zip(good.input_ids, good.supervised)) if s and t == im_end)
    with pytest.raises(MaskError, match="end token of the assistant turn .* is not supervised"):
        verify_masks(tokenizer, [broken(lambda s: s.__setitem__(last_end, False))])
    tool_pos = good.input_ids.index(response)
    with pytest.raises(MaskError, match="of a user turn is supervised"):
        verify_masks(tokenizer, [broken(lambda s: s.__setitem__(tool_pos, True))])
    with pytest.raises(MaskError, match="of a system turn is supervised"):
        verify_masks(tokenizer, [broken(lambda s: s.__setitem__(12, True))])


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer) -> None:
    # like the stock Qwen3 template: only the last assistant turn keeps its text
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n"
                               "{% if m.role != 'assistant' or loop.last %}{{ m.content }}{% endif %}"
                               "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(TemplateError, match="not prefix-stable"):
        encode(tokenizer, conversation("x", turns=2), None)


def test_reasoning_goes_where_the_template_renders_it() -> None:
    message = {"role": "assistant", "content": "Answer.", "reasoning_content": "\nWhy.\n"}
    assert fold_reasoning(message, keep_field=False) == {"role": "assistant",
                                                         "content": "<think>\nWhy.\n</think>\n\nAnswer."}
    assert fold_reasoning(message, keep_field=True) == {"role": "assistant", "content": "Answer.",
                                                        "reasoning_content": "\nWhy.\n"}
    assert fold_reasoning({"role": "user", "content": "hi"}, keep_field=False) == {"role": "user", "content": "hi"}


def test_a_template_that_renders_reasoning_itself_keeps_the_field(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Qwen3-style: the template reads reasoning_content; export keeps it there and the mask trains on it."""
    from transformers import AutoTokenizer

    from tests.training.helpers import make_shift, read_rows, trajectory
    from training.dataset.export import ExportOptions, export
    from training.finetune.tiny_model import CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = CHAT_TEMPLATE.replace(
        "{% generation %}", "{% generation %}{% if message.reasoning_content %}<think>\n"
        "{{ message.reasoning_content }}\n</think>\n\n{% endif %}")
    tok.save_pretrained(tmp_path / "thinking")
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a", turns=2, reasoning="Because"), "x")]})
    export(ExportOptions(sources=[shift], out=tmp_path / "ds", tokenizer=str(tmp_path / "thinking"), val_share=0.0))
    (row,) = read_rows(tmp_path / "ds" / "train.jsonl")
    assistant = [m for m in row["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in assistant] == ["Because 0", "Because 1"]
    assert assistant[0]["content"] == "Step 0 of a."
    encoded = encode(tok, row["messages"], row["tools"])
    supervised = tok.decode([t for t, s in zip(encoded.input_ids, encoded.supervised) if s])
    assert supervised.startswith("<think>\nBecause 0\n</think>\n\nStep 0 of a.")
    verify_masks(tok, [encoded])


def test_packed_rows_give_the_same_loss_as_padded_rows(tiny_model_dir: Path) -> None:
    """With position_ids that restart per row (and no KV cache, as in training) transformers' masks keep packed
    rows apart, so the packed loss equals the padded one; with a cache they would leak into each other."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorWithFlattening

    from training.finetune.train import PaddedCollator, Rows

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.config.use_cache = False  # as training.finetune.train.load_model sets it
    rows = Rows([encode(tok, conversation(f"r{i}", turns=i + 1), TOOLS) for i in range(3)])
    features = [rows[i] for i in range(3)]
    with torch.no_grad():
        padded = model(**PaddedCollator(tok.pad_token_id)(features)).loss
        packed_batch = DataCollatorWithFlattening(return_position_ids=True)(features)
        assert packed_batch["input_ids"].shape[0] == 1 and "attention_mask" not in packed_batch
        packed = model(**packed_batch).loss
        leaky = model(use_cache=True, **packed_batch).loss
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    assert leaky.item() != pytest.approx(padded.item(), rel=1e-5)
