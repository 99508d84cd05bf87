"""Tiny random-weight causal LMs (hidden 32, 2 layers) of the families the shared layout must match."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen2Config

VOCAB = 97
SCALE = 10.0  # random init (std 0.02) gives near-uniform log-probs; scaled weights make the matrix informative
_COMMON = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "pad_token_id": 0,
}


def tiny_config(family: str, **overrides):
    """Small sliding windows (5-6 tokens) make the windowed layers matter at these lengths."""
    if family == "llama":
        return LlamaConfig(**_COMMON, **overrides)
    if family == "qwen2":  # layer 0 full attention, layer 1 sliding window
        kwargs = {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1}
        return Qwen2Config(**_COMMON, **{**kwargs, **overrides})
    if family == "gemma3":  # Gemma's scaled embeddings, QK-norm, final logit soft-capping, local + global layers
        kwargs = {"head_dim": 8, "sliding_window": 6, "final_logit_softcapping": 5.0}
        kwargs["layer_types"] = ["sliding_attention", "full_attention"]
        return Gemma3TextConfig(**_COMMON, **{**kwargs, **overrides})
    raise ValueError(family)


def tiny_model(family: str = "llama", attn: str = "sdpa", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **overrides), attn_implementation=attn).float()
    with torch.no_grad():  # random init is near-uniform; larger weights give log-probs that differ visibly
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(SCALE)
    return model.eval()


@pytest.fixture
def make_model():
    return tiny_model
