"""Tiny GGUF files written with the `gguf` package: a 2-layer llama with a byte-level BPE tokenizer and SmolLM2's
real chat template, so `nightowl model import` runs end to end in seconds without a packaged model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
SMOLLM2_TEMPLATE = (DATA / "smollm2_chat_template.jinja").read_text(encoding="utf-8")
"""SmolLM2-135M-Instruct's chat template as its GGUF ships it (ChatML, no `tools`)."""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: every byte is one token, so any text tokenizes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_gguf(path: Path, architecture: str = "llama", chat_template: str | None = SMOLLM2_TEMPLATE,
                    seed: int = 0) -> Path:
    import gguf
    import torch

    generator = torch.Generator().manual_seed(seed)
    tokens = SPECIALS + byte_tokens()
    merges = ["Ġ t", "h e", "i n"]
    tokens += [m.replace(" ", "") for m in merges]
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny test model")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (vocab - len(SPECIALS)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int) -> Any:
        return (torch.randn(*shape, generator=generator) * 0.02).numpy()

    def ones(size: int) -> Any:
        return torch.ones(size).numpy()

    writer.add_tensor("token_embd.weight", weight(vocab, HIDDEN))
    writer.add_tensor("output_norm.weight", ones(HIDDEN))
    kv = HIDDEN // HEADS * KV_HEADS
    for i in range(LAYERS):
        for name, shape in (("attn_q", (HIDDEN, HIDDEN)), ("attn_k", (kv, HIDDEN)), ("attn_v", (kv, HIDDEN)),
                            ("attn_output", (HIDDEN, HIDDEN)), ("ffn_gate", (FFN, HIDDEN)),
                            ("ffn_up", (FFN, HIDDEN)), ("ffn_down", (HIDDEN, FFN))):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(HIDDEN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
