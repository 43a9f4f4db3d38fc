"""Real chat templates: one that does not render `tools` (SmolLM2's) gets the tool schema in its system prompt and
hermes-style calls, stays prefix-stable, and the assistant-only mask and its check pass on it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.chat_template import (
    is_tools_wrapper,
    renders_tools,
    template_uses_reasoning,
    tool_format_note,
    with_tools_in_system_prompt,
)
from tests.training.gguf_files import SMOLLM2_TEMPLATE
from tests.training.helpers import TOOLS, call, conversation
from training.dataset.mask import encode, verify_masks
from training.dataset.render import fold_reasoning, render, serving_messages, serving_template, serving_tools
from training.finetune.tiny_model import CHAT_TEMPLATE

WRAPPED = with_tools_in_system_prompt(SMOLLM2_TEMPLATE)
TWO_RESULTS = [
    {"role": "system", "content": "You are a careful engineer."},
    {"role": "user", "content": "Fix calc.py."},
    {"role": "assistant", "content": "Look first.\n",
     "tool_calls": [call("c1", "bash", '{"command": "cat calc.py"}'), call("c2", "bash", '{"command":"ls"}')]},
    {"role": "tool", "tool_call_id": "c1", "content": "def add(a, b):\n    return a - b"},
    {"role": "tool", "tool_call_id": "c2", "content": "calc.py"},
    {"role": "assistant", "content": None, "tool_calls": [call("c3", "submit", "")]},
]


@pytest.fixture
def smollm2_tokenizer(tiny_model_dir: Path):
    """The tiny model's tokenizer (ChatML specials, like SmolLM2's) with SmolLM2's real chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    return tokenizer


def test_which_templates_render_tools() -> None:
    assert not renders_tools(SMOLLM2_TEMPLATE) and renders_tools(CHAT_TEMPLATE) and renders_tools(WRAPPED)
    assert not renders_tools("{{ 'You have no tools.' }}{% for m in messages %}{{ m.content }}{% endfor %}")
    assert renders_tools("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
                         "{% if tools %}{{ tools | tojson }}{% endif %}")
    assert with_tools_in_system_prompt(CHAT_TEMPLATE) == CHAT_TEMPLATE  # a template with tools stays as it is
    assert with_tools_in_system_prompt(WRAPPED) == WRAPPED  # never wrapped twice
    assert is_tools_wrapper(WRAPPED) and not is_tools_wrapper(SMOLLM2_TEMPLATE)
    assert "hermes-style" in (tool_format_note(WRAPPED) or "") and tool_format_note(CHAT_TEMPLATE) is None
    assert "never sees the tool schema" in (tool_format_note(SMOLLM2_TEMPLATE) or "")
    assert not template_uses_reasoning(WRAPPED)


def test_the_tool_schema_goes_into_the_system_prompt_and_calls_are_hermes_text(smollm2_tokenizer) -> None:
    assert serving_template(smollm2_tokenizer) == WRAPPED
    text = render(smollm2_tokenizer, TWO_RESULTS, TOOLS)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou are a careful engineer.\n\n# Tools\n")
    for tool in serving_tools(TOOLS):
        assert json.dumps(tool) in system
    assert ("<|im_start|>assistant\nLook first.\n<tool_call>\n{\"name\": \"bash\", \"arguments\": "
            "{\"command\": \"cat calc.py\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"bash\", \"arguments\": "
            "{\"command\": \"ls\"}}\n</tool_call><|im_end|>\n") in text
    # a run of tool results is one user turn, as hermes-trained models saw them
    assert ("<|im_start|>user\n<tool_response>\ndef add(a, b):\n    return a - b\n</tool_response>\n"
            "<tool_response>\ncalc.py\n</tool_response><|im_end|>\n") in text
    assert text.endswith("<|im_start|>assistant\n<tool_call>\n{\"name\": \"submit\", \"arguments\": {}}\n"
                         "</tool_call><|im_end|>\n")
    # an imported checkpoint carries the wrapper itself: the same text
    smollm2_tokenizer.chat_template = WRAPPED
    assert render(smollm2_tokenizer, TWO_RESULTS, TOOLS) == text


def test_without_tools_the_model_s_own_template_is_unchanged(smollm2_tokenizer) -> None:
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    own = smollm2_tokenizer.apply_chat_template(chat, tokenize=False)
    assert own.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert render(smollm2_tokenizer, chat, None) == own
    # tools but no system message: the tool schema becomes the system prompt
    text = render(smollm2_tokenizer, chat, TOOLS)
    assert text.startswith("<|im_start|>system\n# Tools\n") and "SmolLM" not in text


def test_mask_and_its_check_pass_on_the_real_smollm2_template(smollm2_tokenizer) -> None:
    messages = conversation("mask", turns=3)
    row = encode(smollm2_tokenizer, messages, TOOLS)
    runs, current = [], []
    for tok, sup in zip(row.input_ids, row.supervised):
        if sup:
            current.append(tok)
        elif current:
            runs.append(smollm2_tokenizer.decode(current))
            current = []
    expected = []
    for m in messages:
        if m["role"] == "assistant":
            fn = m["tool_calls"][0]["function"]
            expected.append(f'{m["content"]}\n<tool_call>\n{{"name": "{fn["name"]}", "arguments": '
                            f'{json.dumps(json.loads(fn["arguments"]))}}}\n</tool_call><|im_end|>')
    assert runs == expected
    report = verify_masks(smollm2_tokenizer, [row, encode(smollm2_tokenizer, TWO_RESULTS, TOOLS)])
    assert report.supervised_end_tokens == report.assistant_turns == 5 and 0 < report.share < 1


def test_reasoning_is_trained_as_text_where_the_template_does_not_render_it(smollm2_tokenizer) -> None:
    messages = conversation("think", turns=2, reasoning="Because")
    folded = [fold_reasoning(m, keep_field=template_uses_reasoning(WRAPPED)) for m in messages]
    assert folded[2]["content"] == "<think>\nBecause 0\n</think>\n\nStep 0 of think."
    row = encode(smollm2_tokenizer, folded, TOOLS)
    verify_masks(smollm2_tokenizer, [row])
    supervised = smollm2_tokenizer.decode([t for t, s in zip(row.input_ids, row.supervised) if s])
    assert supervised.startswith("<think>\nBecause 0\n</think>\n\nStep 0 of think.\n<tool_call>")
    assert serving_messages(messages)[2]["reasoning"] == "Because 0"


def test_untrained_rows_of_emitted_special_tokens_are_found_and_reported(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.dataset.mask import untrained_special_tokens
    from training.finetune.train import TrainOptions, train

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [encode(tokenizer, conversation("rows", turns=2), TOOLS)]
    assert untrained_special_tokens(model, tokenizer, rows) == []  # random init: every row differs
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<tool_call>", "</tool_call>",
                                                           "<tool_response>")}
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight[ids["<|im_end|>"]] = 0
        weight[ids["<tool_call>"]] = weight[ids["</tool_call>"]]  # like Qwen2.5-Coder's padding-row tags
    found = untrained_special_tokens(model, tokenizer, rows)
    assert found == [f"<|im_end|> (id {ids['<|im_end|>']}: input row all zero)",
                     f"<tool_call> (id {ids['<tool_call>']}: input row identical to 1 other row)",
                     f"</tool_call> (id {ids['</tool_call>']}: input row identical to 1 other row)"]
    assert "<tool_response>" not in " ".join(found)  # in the rows too, with its own trained row
    # ... through `nightowl train`: a warning before training, and the training report keeps the list
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"messages": conversation("rows", turns=2), "tools": TOOLS}) + "\n")
    lines: list[str] = []
    report = train(TrainOptions(base=str(base), data=data, out=tmp_path / "adapter", max_steps=1), log=lines.append)
    warning = next(line for line in lines if line.startswith("warning:"))
    assert "3 token(s) the chat template emits have untrained embedding rows" in warning and str(base) in warning
    assert report.mask["train"]["untrained_special_tokens"] == found


def test_a_template_that_renders_reasoning_keeps_it_inside_the_wrapper(smollm2_tokenizer) -> None:
    thinking = SMOLLM2_TEMPLATE.replace("message['content']", "(message.reasoning_content or '') + message['content']")
    wrapped = with_tools_in_system_prompt(thinking)
    assert template_uses_reasoning(wrapped) and not template_uses_reasoning(WRAPPED)
    smollm2_tokenizer.chat_template = thinking
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "reasoning_content": "Hmm. ", "tool_calls": [call("c", "submit", "{}")]}]
    assert "Hmm. <tool_call>" in render(smollm2_tokenizer, messages, TOOLS)


def test_nightowl_serves_a_template_without_tools_through_the_same_wrapper(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.serving.vllm_server import ServerConfig, plan_server

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "SmolLM2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (model / "chat_template.jinja").write_text(SMOLLM2_TEMPLATE)
    plan = plan_server(ServerConfig(model=str(model)), device="cpu", port=8000, launcher=["vllm", "serve"])
    template_file = Path(plan.argv[plan.argv.index("--chat-template") + 1])
    assert template_file.read_text() == WRAPPED and template_file.is_relative_to(tmp_path / "cache")
    # the wrapper's <tool_call> picks the hermes parser (model_type llama alone would pick llama3_json)
    assert plan.tool_call_parser == "hermes" and any("hermes-style" in n for n in plan.notes)
    own = plan_server(ServerConfig(model=str(model), extra_args=["--chat-template", "mine.jinja"]), device="cpu",
                      port=8000, launcher=["vllm", "serve"])
    assert own.argv.count("--chat-template") == 1 and own.argv[-1] == "mine.jinja"
