"""A judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

Standard library only (``urllib.request``). The API key is read from an environment variable
(``OPENAI_API_KEY`` by default) and is sent only in the ``Authorization`` header: it is never
stored in the cache, the verdicts, the summary or a log line.

Behaviour on failure:

* 429, 5xx, timeouts and connection errors are retried with exponential backoff (with jitter,
  honouring ``Retry-After``) up to ``max_retries`` times;
* 401/403 raise :class:`~sami.evaluation.judges.JudgeAuthError` at once, naming the variable;
* 404 raises :class:`~sami.evaluation.judges.JudgeError` (wrong base URL or model name);
* an endpoint that cannot be connected to after all retries raises
  :class:`~sami.evaluation.judges.JudgeUnreachableError`;
* anything else that leaves one request without an answer (retries used up on 429/5xx/timeout,
  a malformed body, a 400) returns an ``"unparsed"`` result with ``error`` set, and is counted
  in :meth:`APIJudge.stats` as a failure, apart from answers in the wrong format
  (``parse_failures``).

Successful answers are cached on disk under a SHA-256 of the request body (model, messages,
sampling parameters), so rerunning an evaluation sends no request at all.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from sami.evaluation.judges import (
    JudgeAuthError,
    JudgeError,
    JudgeResult,
    JudgeUnreachableError,
)
from sami.evaluation.templates import parse_verdict, render_judge_prompt, resolve_template

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = "You are a careful, impartial evaluator of AI assistant responses."


class _Retryable(Exception):
    def __init__(self, message: str, delay: float | None = None, connection: bool = False):
        super().__init__(message)
        self.delay = delay
        self.connection = connection


class APIJudge:
    """Judge with a chat model behind an OpenAI-compatible endpoint.

    Args:
        model: model name sent in the request (``"gpt-4-0613"`` in the paper).
        base_url: endpoint root, e.g. ``"https://api.openai.com/v1"`` or ``"http://localhost:8000/v1"``;
            ``/chat/completions`` is appended unless already there.
        api_key_env: environment variable holding the key. ``None`` or ``""`` sends no key (a local
            server without authentication).
        template: ``"dialogue"``, ``"summarisation"`` or a custom template string
            (see :mod:`sami.evaluation.templates`).
        system_prompt: system message; ``None`` sends none.
        temperature: sampling temperature (0: deterministic, as cached).
        max_tokens: completion budget; the templates ask for a short comparison and a final line.
        timeout: seconds per HTTP attempt.
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors.
        backoff: first retry delay in seconds; doubles per retry (with jitter), capped at ``max_backoff``.
        max_backoff: cap on any delay, including a server's ``Retry-After``.
        max_concurrency: requests in flight at once, across all threads using this judge.
        cache_dir: folder of the on-disk answer cache; ``None`` disables caching.
        extra_body: further request fields (``{"seed": 0}``, ``{"top_p": 0.9}``).
        name: name recorded in verdicts (default ``"api:<model>"``).

    Example:
        >>> judge = APIJudge("gpt-4o-mini", cache_dir="runs/demo/judge_cache")  # doctest: +SKIP
        >>> judge.judge("How do I boil an egg?", "1. Be concise.", "Boil 8 min.", "Eggs are...")  # doctest: +SKIP
        JudgeResult(verdict='A', raw='A is shorter...\\nFinal answer: A', error=None)
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        template: str = "dialogue",
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        temperature: float = 0.0,
        max_tokens: int = 256,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_concurrency: int = 8,
        cache_dir: str | Path | None = None,
        extra_body: dict | None = None,
        name: str | None = None,
    ) -> None:
        if not model:
            raise JudgeError("APIJudge needs a model name (--judge-model)")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise JudgeError("APIJudge: max_concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self.model = model
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.api_key_env = api_key_env or None
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise JudgeError(
                f"the judge's API key is read from the environment variable {self.api_key_env}, which is not set; "
                f"export {self.api_key_env}=... (or name another variable with --judge-api-key-env, "
                "or pass an empty name for a server without authentication)"
            )
        self.template = resolve_template(template)
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_concurrency = max_concurrency
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.extra_body = dict(extra_body or {})
        self.name = name or f"api:{model}"
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._counts = {
            "calls": 0,  # judge() / complete() calls
            "cache_hits": 0,
            "requests": 0,  # HTTP attempts sent
            "retries": 0,
            "failures": 0,  # calls that ended without an answer
            "parse_failures": 0,  # answers not in the expected format
        }

    def __repr__(self) -> str:  # never shows the key
        return f"APIJudge(model={self.model!r}, url={self.url!r}, api_key_env={self.api_key_env!r})"

    # ------------------------------------------------------------------ public
    def prompt(self, query: str, constitution: str, response_a: str, response_b: str) -> str:
        """The user message sent to the judge."""
        return render_judge_prompt(self.template, query, constitution, response_a, response_b)

    def judge(self, query: str, constitution: str, response_a: str, response_b: str) -> JudgeResult:
        prompt = self.prompt(query, constitution, response_a, response_b)
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        content, error = self.complete(messages)
        if error is not None:
            return JudgeResult("unparsed", content or "", error)
        verdict = parse_verdict(content)
        if verdict == "unparsed":
            self._count("parse_failures")
        return JudgeResult(verdict, content, None)

    def complete(self, messages: list[dict]) -> tuple[str, str | None]:
        """Send one chat request (or answer it from the cache). Returns ``(content, error)``."""
        self._count("calls")
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            **self.extra_body,
        }
        key = request_key(body)
        cached = self._cache_get(key)
        if cached is not None:
            self._count("cache_hits")
            return cached, None
        try:
            content = self._post_with_retries(body)
        except _Failure as failure:
            self._count("failures")
            logger.warning("judge request failed: %s", failure)
            return "", str(failure)
        self._cache_put(key, body, content)
        return content, None

    def stats(self) -> dict:
        with self._lock:
            return {"judge": self.name, **self._counts}

    # ----------------------------------------------------------------- HTTP
    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env is not None:
            headers["Authorization"] = "Bearer " + os.environ.get(self.api_key_env, "")
        return headers

    def _post_with_retries(self, body: dict) -> str:
        data = json.dumps(body).encode("utf-8")
        only_connection_errors = True
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(data)
            except _Retryable as error:
                last = str(error)
                only_connection_errors &= error.connection
                if attempt == self.max_retries:
                    break
                delay = error.delay if error.delay is not None else self.backoff * 2**attempt * (0.5 + random.random())
                delay = max(0.0, min(delay, self.max_backoff))
                self._count("retries")
                logger.warning("judge request: %s; retry %d/%d in %.2fs", last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        attempts = self.max_retries + 1
        if only_connection_errors:
            raise JudgeUnreachableError(
                f"cannot reach the judge endpoint {self.url} after {attempts} attempts ({last}); "
                "check --judge-base-url and that the server is running"
            )
        raise _Failure(f"{last} after {attempts} attempts")

    def _post_once(self, data: bytes) -> str:
        request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
        try:
            with self._slots:
                self._count("requests")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
        except urllib.error.HTTPError as error:
            status = error.code
            detail = _snippet(error)
            if status in (401, 403):
                raise JudgeAuthError(
                    f"the judge endpoint {self.url} rejected the API key from ${self.api_key_env} "
                    f"(HTTP {status}): wrong key, or no access to model {self.model!r}; "
                    f"set {self.api_key_env} to a valid key"
                ) from None
            if status == 404:
                raise JudgeError(
                    f"the judge endpoint {self.url} answered HTTP 404 ({detail}); check --judge-base-url "
                    f"(usually ending in /v1) and the model name {self.model!r}"
                ) from None
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}", delay=_retry_after(error.headers)) from None
            raise _Failure(f"HTTP {status}: {detail}") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout}s") from None
            raise _Retryable(f"connection error: {reason}", connection=True) from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"timed out after {self.timeout}s") from None
        except (ConnectionError, http.client.HTTPException) as error:
            raise _Retryable(f"connection error: {type(error).__name__}: {error}") from None
        try:
            answer = json.loads(payload)
            content = answer["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise _Failure(f"malformed response body ({type(error).__name__}: {error}): {payload[:200]!r}") from None
        return content

    # ---------------------------------------------------------------- cache
    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["content"]
        except (ValueError, KeyError, OSError):
            return None  # a damaged entry is re-requested and overwritten

    def _cache_put(self, key: str, body: dict, content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{threading.get_ident()}.tmp")
        partial.write_text(json.dumps({"request": body, "content": content}, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)  # atomic: concurrent writers of one key cannot leave half a file

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


class _Failure(Exception):
    """One request ended without an answer; counted, recorded, not fatal."""


def request_key(body: dict) -> str:
    """SHA-256 of the canonical JSON of a request body: the cache key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _snippet(error: urllib.error.HTTPError) -> str:
    try:
        return error.read()[:200].decode("utf-8", "replace")
    except Exception:
        return "no body"
