"""Fixtures of the evaluation tests: a real OpenAI-compatible HTTP server on 127.0.0.1 for the API
judge, tiny checkpoints with the real SmolLM2 tokenizer, and a spy on the prompts generated.

The server speaks HTTP/1.1 with keep-alive, as real endpoints do, and counts the TCP connections
it accepts (``server.connections``), so tests see whether the client reuses them.

The fake judge prefers the response that contains the word ``GOOD`` (tie when neither or both
do). ``server.mode`` selects a failure mode:

* ``normal``: answer at once;
* ``slow``: wait ``server.delay`` seconds before answering (client timeouts), except the first
  ``server.slow_after`` requests (default 0: every one is slow);
* ``429``/``500``: the first ``server.fail_first`` requests get that status, then answers;
* ``malformed``: HTTP 200 with a body that is not JSON;
* ``garbage``: valid JSON, but the answer ignores the format (``"Both are lovely."``);
* ``401``/``403``: reject every request (a wrong key; a key without access to the model);
* ``404``: the model does not exist (an OpenAI-style 404 on the right path).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import serving, tiny_model


class FakeJudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "normal"
        self.delay = 1.0
        self.fail_first = 1
        self.slow_after = 0
        self.retry_after: str | None = None
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request: path, headers, body
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # TCP connections accepted
        self.stop = threading.Event()

    def get_request(self):
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0
            self.connections = 0


def fake_answer(prompt: str) -> str:
    a = re.search(r"<(?:response|summary)_a>(.*?)</", prompt, re.DOTALL)
    b = re.search(r"<(?:response|summary)_b>(.*?)</", prompt, re.DOTALL)
    good_a = bool(a and "GOOD" in a.group(1))
    good_b = bool(b and "GOOD" in b.group(1))
    verdict = "A" if good_a and not good_b else "B" if good_b and not good_a else "tie"
    return f"One follows the constitution better.\nFinal answer: {verdict}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeJudgeServer
    protocol_version = "HTTP/1.1"  # keep-alive: a connection serves requests until the client closes it
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stall

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        # the request stops counting as in flight before its answer leaves: once the client has the answer it may
        # send the next request, possibly before this thread runs again
        with self.server.lock:
            self.server.in_flight -= 1
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        with server.lock:
            server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            number = len(server.requests)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error": "not found"}')
                return
            mode = server.mode
            if mode in ("401", "403"):
                self._send(int(mode), b'{"error": {"message": "Incorrect API key provided"}}')
                return
            if mode == "404":
                self._send(404, b'{"error": {"message": "The model does not exist", "code": "model_not_found"}}')
                return
            if mode in ("429", "500") and number <= server.fail_first:
                headers = {"Retry-After": server.retry_after} if server.retry_after else {}
                self._send(int(mode), b'{"error": "try again"}', headers)
                return
            if mode == "malformed":
                self._send(200, b"<html>this is not json")
                return
            if mode == "slow" and number > server.slow_after:
                server.stop.wait(server.delay)
            if mode == "busy":  # a little work, to observe concurrency
                time.sleep(0.05)
            prompt = body["messages"][-1]["content"]
            content = "Both are lovely." if mode == "garbage" else fake_answer(prompt)
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            self._send(200, json.dumps(answer).encode())
        except Exception:
            with server.lock:
                server.in_flight -= 1  # no answer was sent
            raise


@pytest.fixture
def judge_server():
    with serving(FakeJudgeServer()) as server:
        try:
            yield server
        finally:
            server.stop.set()  # releases handlers still waiting (slow modes)


@pytest.fixture
def api_key(monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-7f3a9c"
    monkeypatch.setenv("SAMI_TEST_JUDGE_KEY", secret)
    return secret


@pytest.fixture
def one_torch_thread():
    """Run a model test on one torch thread, then restore the setting.

    On a 2-core machine shared with other jobs, torch's two OpenMP threads oversubscribe the cores:
    a smollm2-135m forward took 3-5 s on 2 threads and 0.7 s on 1 (measured here under load), and
    the end-to-end test 176 s vs 13 s. These tests check plumbing, not speed.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, smol_tokenizer):
    """Two tiny random Llama checkpoints (seeds 0 and 1) with the real SmolLM2 tokenizer (and chat template)."""
    tok = smol_tokenizer
    folder = tmp_path_factory.mktemp("tiny")
    paths = []
    for seed in (0, 1):
        path = folder / f"model{seed}" / "checkpoint"
        model = tiny_model(vocab_size=len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(path)
    return paths


@pytest.fixture
def generated_prompts(monkeypatch):
    """The number of prompts of every call to the hf backend's ``generate`` (a spy: generation runs as usual)."""
    from sami.generation.hf_backend import HFGenerator

    calls: list[int] = []
    generate = HFGenerator.generate

    def spy(self, prompts, sampling, seeds=None):
        calls.append(len(prompts))
        return generate(self, prompts, sampling, seeds)

    monkeypatch.setattr(HFGenerator, "generate", spy)
    return calls
