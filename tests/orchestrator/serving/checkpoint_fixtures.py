"""Fixture checkpoints: config.json + tokenizer files with each family's chat-template markers, no weights.

The templates are short stand-ins written for these tests; each carries the markers that identify its family
in the real checkpoints (Qwen3-Coder's `<function=`, GLM's `<arg_key>`, Llama 3's header ids, DeepSeek's
tool-call tokens, gpt-oss's channels, hermes' `<tool_call>`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATES = {
    "qwen3-coder": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% for c in m.tool_calls or [] %}"
                   "<tool_call>\n<function={{ c.function.name }}>\n<parameter=x>\n</parameter>\n</function>\n"
                   "</tool_call>{% endfor %}<|im_end|>\n{% endfor %}",
    "glm": "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>{% if m.reasoning_content %}<think>"
           "{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}{% for c in m.tool_calls or [] %}"
           "<tool_call>{{ c.function.name }}<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>"
           "{% endfor %}{% endfor %}",
    "llama3": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
              "{{ m.content }}<|eot_id|>{% endfor %}",
    "deepseek-v3": "{% for m in messages %}{{ m.content }}{% if m.tool_calls %}<｜tool▁calls▁begin｜>"
                   "<｜tool▁call▁begin｜>function<｜tool▁sep｜>{{ m.tool_calls[0].function.name }}"
                   "<｜tool▁call▁end｜><｜tool▁calls▁end｜>{% endif %}{% endfor %}",
    "deepseek-v3.1": "{% for m in messages %}{% if thinking %}<think>{% endif %}</think>{{ m.content }}"
                     "{% if m.tool_calls %}<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
                     "{{ m.tool_calls[0].function.name }}<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
                     "{% endif %}{% endfor %}",
    "gpt-oss": "{% for m in messages %}<|start|>{{ m.role }}<|channel|>final<|message|>{{ m.content }}<|end|>"
               "{% endfor %}",
    "hermes": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% for c in m.tool_calls or [] %}"
              "<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}",
    "qwen3": "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.reasoning_content %}<think>\n"
             "{{ m.reasoning_content }}\n</think>\n\n{% endif %}{{ m.content }}{% for c in m.tool_calls or [] %}"
             "<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n{% endfor %}",
}


def make_checkpoint(directory: Path, model_type: str | None, template: str | None,
                    where: str = "tokenizer_config.json", **config: Any) -> Path:
    """A checkpoint directory without weights; `where` is the file the template is saved in."""
    directory.mkdir(parents=True)
    config = {"architectures": ["X"], **config}
    if model_type:
        config["model_type"] = model_type
    (directory / "config.json").write_text(json.dumps(config))
    if template is None:
        (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    elif where == "chat_template.jinja":
        (directory / "chat_template.jinja").write_text(template)
    elif where == "named":
        (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
            {"name": "default", "template": "{{ messages }}"}, {"name": "tool_use", "template": template}]}))
    else:
        (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return directory


def make_adapter(directory: Path, base: str, r: Any = 16, **extra: Any) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 32, "base_model_name_or_path": base, **extra}))
    return directory
