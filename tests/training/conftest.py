"""Fixtures for the training tests: SmolLM2's tokenizer and tiny random-weight Llamas sized for it."""

from __future__ import annotations

import pytest
from helpers import tiny_model


@pytest.fixture(scope="session")
def tokenizer(smol_tokenizer):
    return smol_tokenizer


@pytest.fixture
def model_factory(tokenizer):
    """``build(seed=0, attn="sdpa")``: a 2-layer Llama with hidden size 32 over SmolLM2's vocabulary (float32)."""

    def build(seed: int = 0, attn: str = "sdpa"):
        # a tied head, as SmolLM2's: half the parameters of an untied 49k-vocabulary head
        return tiny_model(vocab_size=len(tokenizer), seed=seed, attn=attn, tie_word_embeddings=True)

    return build
