"""A tiny Qwen2 model with a locally trained tokenizer, for tests and demos.

It shows the machinery (vLLM serving, tool-call parsing, LoRA, training) end to end without downloading
weights. Built with random weights, its output is noise. `pretrain` then gives it a few minutes of next-token
training on plain Python source: enough for working attention (so a LoRA fine-tune can teach it a format),
while it has still never seen a chat turn or a tool call.
"""
from __future__ import annotations

import json
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sandbox.errors import UserError


class DirectoryNotEmpty(UserError, FileExistsError):
    pass


VOCAB_SIZE = 4096
CORPUS_BYTES = 3_000_000
SEED = 0
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Not "special": vLLM decodes with skip_special_tokens, and the hermes parser must still see these in text.
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

# Hermes / Qwen2.5-style ChatML. transformers renders with trim_blocks, so a newline right after a block tag is
# written as {{ '\\n' }}. Prefix-stable by design: every message renders the same way wherever it sits
# (no special last turn, no dropped reasoning, each tool result in its own user turn), so rendering
# messages[:k] is a prefix of rendering messages[:k+1]. Assistant text sits inside {% generation %} for
# assistant-only loss masks.
CHAT_TEMPLATE = (
    "{% set ns = namespace(system=none) %}"
    "{% if messages and messages[0].role == 'system' %}{% set ns.system = messages[0].content %}{% endif %}"
    "{% if tools %}"
    "<|im_start|>system\n{% if ns.system is not none %}{{ ns.system }}\n\n{% endif %}"
    "# Tools\n\nYou can call the functions below. Their signatures are inside <tools></tools>:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n"
    "To call a function, reply with a JSON object holding its name and arguments inside "
    "<tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
    "\n</tool_call><|im_end|>\n"
    "{% elif ns.system is not none %}"
    "<|im_start|>system\n{{ ns.system }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' and loop.first %}"
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}{{ message.content or '' }}"
    "{% for call in message.tool_calls or [] %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "{% if message.content or not loop.first %}{{ '\\n' }}{% endif %}"
    "<tool_call>\n{\"name\": {{ fn.name | tojson }}, \"arguments\": "
    "{% if fn.arguments is string %}{{ fn.arguments }}{% else %}{{ fn.arguments | tojson }}{% endif %}"
    "}\n</tool_call>"
    "{% endfor %}"
    "<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% elif message.role == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
    "{% else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_corpus() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_texts(corpus: Path, budget: int = CORPUS_BYTES) -> Iterator[str]:
    """Text files under `corpus` (or the file itself), in sorted order, up to `budget` bytes."""
    if corpus.is_file():
        yield corpus.read_text(encoding="utf-8", errors="replace")[:budget]
        return
    files = sorted(p for p in corpus.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    if not files:
        raise UserError(f"no .py files to train the tokenizer on under {corpus}")
    used = 0
    for path in files[:: max(1, len(files) // 400)]:
        text = path.read_text(encoding="utf-8", errors="replace")
        yield text
        used += len(text)
        if used >= budget:
            return


def train_tokenizer(corpus: Path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(TOOL_TOKENS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_texts(corpus), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, directory: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,  # head size 32: the smallest vLLM's CPU attention takes
        max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, dtype="float32",
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=pad)
    model.save_pretrained(directory)


PRETRAIN_REPORT = "pretraining.json"


def pretrain(directory: Path, corpus: Path, steps: int, log: Callable[[str], None] = print,
             window: int = 256, batch: int = 16, lr: float = 3e-3) -> dict:
    """Next-token training of the model in `directory` on random windows of `corpus`, in place; the measured
    loss curve goes to DIRECTORY/pretraining.json. Deterministic for a given corpus and thread count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    ids: list[int] = []
    for text in corpus_texts(corpus, CORPUS_BYTES // 2):
        ids += tokenizer(text, verbose=False)["input_ids"] + [tokenizer.pad_token_id]
    tokens = torch.tensor(ids)
    if len(tokens) <= window + 1:
        raise UserError(f"corpus {corpus} is too small to pretrain on ({len(tokens)} tokens)")
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    started, curve = time.monotonic(), []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(tokens) - window - 1, (batch,), generator=generator)
        inputs = torch.stack([tokens[i:i + window] for i in starts.tolist()])
        loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step == 1 or step % 50 == 0 or step == steps:
            curve.append({"step": step, "loss": round(loss.item(), 4)})
            log(f"pretraining step {step}/{steps}: loss {loss.item():.3f} ({time.monotonic() - started:.0f} s)")
    model.eval()
    model.save_pretrained(directory)
    report = {"steps": steps, "window": window, "batch": batch, "lr": lr, "corpus": str(corpus),
              "corpus_tokens": len(tokens), "seconds": round(time.monotonic() - started, 1), "loss": curve}
    (directory / PRETRAIN_REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def build_tiny_model(directory: Path, corpus: Path | None = None, pretrain_steps: int = 0,
                     log: Callable[[str], None] = print) -> Path:
    """Write a tiny Qwen2ForCausalLM + tokenizer + chat template to `directory` (new or empty); returns it.
    With `pretrain_steps`, the weights then get that many steps of next-token training on `corpus`."""
    directory = Path(directory).expanduser()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DirectoryNotEmpty(f"{directory} already exists and is not empty; give a new directory")
    corpus = Path(corpus).expanduser() if corpus else default_corpus()
    if not corpus.exists():
        raise UserError(f"corpus {corpus} does not exist")
    tokenizer = train_tokenizer(corpus)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    build_model(tokenizer, directory)
    if pretrain_steps:
        pretrain(directory, corpus, pretrain_steps, log=log)
    return directory
