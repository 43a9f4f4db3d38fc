"""The published `config.json` shapes of real coders, for memory plans and benchmarks built without weights."""
from __future__ import annotations

QWEN25_CODER_7B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    "hidden_act": "silu"}
QWEN3_CODER_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
    "vocab_size": 151936, "decoder_sparse_step": 1, "max_position_embeddings": 262144, "rope_theta": 10000000.0,
    "rms_norm_eps": 1e-6, "norm_topk_prob": True, "tie_word_embeddings": False, "hidden_act": "silu",
    "mlp_only_layers": []}
