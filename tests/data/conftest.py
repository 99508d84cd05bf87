"""Fixtures of the query tests: the Hugging Face Hub, reachable or not, as a real endpoint on loopback.

``sami.hub_access`` asks the Hub (``huggingface_hub.constants.ENDPOINT``) whether it answers before a
hub dataset is loaded; these fixtures point that endpoint at a server on 127.0.0.1 that answers, or at
a port nobody listens on (a connection refused, as without network).
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import serving


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
