"""The pooled API client against a real HTTP/1.1 server on loopback that counts TCP connections.

The server answers ``server.script`` statuses in order (one per request), then 200 with the echo
``answer to <last user message>``; ``server.close_after_answer`` makes it close each connection
after answering, without saying so (a keep-alive timeout on the server side).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import serving

from sami.api_client import (
    APIAuthError,
    APIClient,
    APIError,
    CompletionResult,
    parse_retry_after,
    request_key,
)

SECRET = "sk-client-test-DO-NOT-LEAK-41c2"
MESSAGES = [{"role": "user", "content": "Hi"}]


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.script: list[int] = []
        self.close_after_answer = False
        self.requests: list[dict] = []
        self.connections = 0

    def get_request(self):
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = self.server.script.pop(0) if self.server.script else 200
        if status == 200:
            content = "answer to " + body["messages"][-1]["content"]
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        else:
            payload = b'{"error": {"message": "scripted failure"}}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = self.server.close_after_answer


@contextlib.contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    with serving(ScriptedServer()) as server:
        yield server


def make_client(server: ScriptedServer, **kwargs) -> APIClient:
    options = {"role": "test", "api_key_env": "SAMI_TEST_CLIENT_KEY", "timeout": 2.0, "max_retries": 2, "backoff": 0.01}
    options.update(kwargs)
    return APIClient(server.url, **options)


def ask(client: APIClient, text: str = "Hi", **kwargs) -> CompletionResult:
    return client.complete([{"role": "user", "content": text}], model="m", max_tokens=8, temperature=0.0, **kwargs)


@pytest.fixture(autouse=True)
def client_key(monkeypatch):
    monkeypatch.setenv("SAMI_TEST_CLIENT_KEY", SECRET)


def test_sequential_requests_reuse_one_connection():
    with scripted_server() as server, make_client(server) as client:
        results = [ask(client, f"question {i}") for i in range(6)]
        assert [r.content for r in results] == [f"answer to question {i}" for i in range(6)]
        assert server.connections == 1 and len(server.requests) == 6
        assert client.stats() == {"calls": 6, "cache_hits": 0, "requests": 6, "retries": 0, "failures": 0}
        assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_concurrent_requests_open_at_most_max_concurrency_connections():
    with scripted_server() as server, make_client(server, max_concurrency=2) as client:
        threads = [threading.Thread(target=ask, args=(client, f"q{i}")) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(server.requests) == 8 and 1 <= server.connections <= 2


def test_a_connection_the_server_closed_is_replaced_without_a_retry():
    with scripted_server() as server, make_client(server) as client:
        server.close_after_answer = True  # closes silently, as a server's keep-alive timeout does
        assert [ask(client, f"q{i}").content for i in range(3)] == ["answer to q0", "answer to q1", "answer to q2"]
        assert server.connections == 3
        assert client.stats()["retries"] == 0 and client.stats()["failures"] == 0


def test_a_reused_connection_that_fails_is_replaced_once(monkeypatch):
    import sami.api_client

    monkeypatch.setattr(sami.api_client, "_still_open", lambda connection: connection.sock is not None)
    with scripted_server() as server, make_client(server) as client:
        server.close_after_answer = True  # the idle check is off: the client finds out as it sends
        assert [ask(client, f"q{i}").content for i in range(3)] == ["answer to q0", "answer to q1", "answer to q2"]
        assert server.connections == 3 and len(server.requests) == 3
        assert client.stats()["requests"] == 3 and client.stats()["retries"] == 0 and client.stats()["failures"] == 0


def test_500_then_success_is_retried():
    with scripted_server() as server, make_client(server) as client:
        server.script = [500, 503]
        result = ask(client)
        assert result == CompletionResult("answer to Hi")
        assert len(server.requests) == 3
        assert client.stats()["retries"] == 2 and client.stats()["failures"] == 0


def test_500_until_retries_are_used_up_is_a_returned_failure():
    with scripted_server() as server, make_client(server, max_retries=1) as client:
        server.script = [500, 500]
        result = ask(client)
        assert result.failed and result.error == "HTTP 500 after 2 attempts" and result.content == ""
        assert client.stats()["failures"] == 1


def test_401_is_fatal_at_once():
    with scripted_server() as server, make_client(server, max_retries=3) as client:
        server.script = [401]
        with pytest.raises(APIAuthError, match="SAMI_TEST_CLIENT_KEY") as error:
            ask(client)
        assert "wrong key" in str(error.value) and SECRET not in str(error.value)
        assert len(server.requests) == 1 and client.stats()["retries"] == 0


def test_404_names_the_base_url_flag():
    with scripted_server() as server, make_client(server, role="writer") as client:
        server.script = [404]
        with pytest.raises(APIError, match="--writer_base_url"):
            ask(client)


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SAMI_TEST_CLIENT_KEY")
    with pytest.raises(APIError, match="SAMI_TEST_CLIENT_KEY.*--writer_api_key_env"):
        APIClient("http://127.0.0.1:1/v1", role="writer", api_key_env="SAMI_TEST_CLIENT_KEY")


def test_cache_answers_repeats_and_never_holds_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with scripted_server() as server:
        server.script = [500]  # exercise the retry log line too
        with make_client(server, cache_dir=tmp_path / "cache") as client:
            first = [ask(client, f"q{i}", seed=i) for i in range(3)]
        assert len(server.requests) == 4 and server.requests[0]["body"]["seed"] == 0
        with make_client(server, cache_dir=tmp_path / "cache") as rerun:
            again = [ask(rerun, f"q{i}", seed=i) for i in range(3)]
            assert [r.content for r in again] == [r.content for r in first] and all(r.cached for r in again)
            assert rerun.stats()["cache_hits"] == 3 and rerun.stats()["requests"] == 0
            assert not ask(rerun, "q0", seed=99).cached  # another request body is a miss
        assert len(server.requests) == 5
    files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len(files) == 4
    entry = json.loads(files[0].read_text(encoding="utf-8"))
    assert set(entry) == {"request", "content"} and files[0].stem == request_key(entry["request"])
    for path in files:
        assert SECRET not in path.read_text(encoding="utf-8"), path
    assert "retry" in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(rerun) and SECRET not in json.dumps(rerun.stats())


def test_azure_style_api_version_and_api_key_header():
    with scripted_server() as server, make_client(server, api_version="2024-10-21") as client:
        assert ask(client).content == "answer to Hi"
        request = server.requests[0]
        assert request["path"] == "/v1/chat/completions?api-version=2024-10-21"
        assert request["headers"]["api-key"] == SECRET and "Authorization" not in request["headers"]


def test_http_proxy_from_the_environment(monkeypatch):
    with scripted_server() as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with APIClient("http://api.example.invalid/v1", role="test", api_key_env=None, timeout=2.0) as client:
            assert ask(client).content == "answer to Hi"
        assert proxy.requests[0]["path"] == "http://api.example.invalid/v1/chat/completions"
        assert proxy.requests[0]["headers"]["Host"] == "api.example.invalid"


def test_retry_after_formats():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert request_key({"a": 1, "b": 2}) == request_key({"b": 2, "a": 1})
