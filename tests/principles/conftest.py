"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the API principle writer.

The fake writer answers each request with a well-formed principle about the aspect its prompt asks
for, the way a chat model does: its own name, Markdown bold on one field. It records every request
(path, headers, body); its API key is ``server.secret``, in ``$SAMI_TEST_WRITER_KEY``
(``server.key_env``). ``server.prose_first = k``: the first k requests get an answer that ignores
the format (HTTP 200); ``server.status = 401`` (or any other) answers every request with that status;
``server.status = "html"`` answers HTTP 200 with a body that is not JSON (not a chat endpoint).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import serving

SECRET = "sk-writer-test-DO-NOT-LEAK-9f3e"
KEY_ENV = "SAMI_TEST_WRITER_KEY"


class FakeWriterServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.prose_first = 0
        self.status: int | str = 200
        self.secret = SECRET
        self.key_env = KEY_ENV

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def bodies(self) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests]


def fake_principle(prompt: str) -> str:
    """A chat model's answer to the writer's instruction: a principle about the aspect asked for."""
    aspect = re.search(r"Write a principle about the (.+?) of the response", prompt).group(1)
    return (
        f"Name: my {aspect} rule\n"
        f"**Principle:** The response gets its {aspect} right for the reader.\n"
        f"Antithesis: The response gets its {aspect} wrong for the reader."
    )


class _Handler(BaseHTTPRequestHandler):
    server: FakeWriterServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            number = len(server.requests)
        status = server.status
        if status == "html":
            status, payload = 200, b"<html>a web page</html>"
        elif status != 200:
            payload = json.dumps({"error": {"message": f"scripted HTTP {status}"}}).encode()
        else:
            prompt = body["messages"][-1]["content"]
            content = "Here is a principle for you!" if number <= server.prose_first else fake_principle(prompt)
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def writer_server(monkeypatch):
    """The fake writer endpoint, with its API key in ``$SAMI_TEST_WRITER_KEY``."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    with serving(FakeWriterServer()) as server:
        yield server
