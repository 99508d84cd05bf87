"""Chat completions on any OpenAI-compatible endpoint (``/v1/chat/completions``): one client, one policy.

The API judge (:mod:`sami.evaluation.api_judge`) sends its requests through :class:`APIClient`, and so
should any other part of sami that calls an API model (docs/evaluation.md, "The API client").

* **Key**: read from an environment variable (``OPENAI_API_KEY`` by default) at each request and sent
  only in a header (``Authorization: Bearer``, or ``api-key`` for Azure OpenAI); never kept on the
  object, written to the cache, shown in ``repr`` or logged. An unset variable is an error naming it.
* **Connections**: standard library only. Keep-alive ``http.client`` connections live in a pool: a
  request takes an idle one (or opens one) and gives it back, so sequential requests share one TCP
  (and TLS) connection, and concurrent ones at most ``max_concurrency``. An idle connection the server
  has closed is dropped before use; one that fails as it is reused is replaced once, silently. The
  ``http(s)_proxy`` / ``no_proxy`` environment variables are honoured.
* **Retries**: 429, 5xx, timeouts and connection errors are retried ``max_retries`` times with
  exponential backoff (jitter; a server's ``Retry-After`` wins; capped at ``max_backoff``).
* **Fatal errors** (raised): 401/403 :class:`APIAuthError`; 404 :class:`APIError` (wrong base URL or
  model name); an endpoint that cannot be connected to after all retries :class:`APIUnreachableError`.
* **Failed requests** (returned, not raised): retries used up, a malformed body, another 4xx: a
  :class:`CompletionResult` with ``error`` set, counted as a failure. The caller decides.
* **Cache**: answered requests are stored under ``cache_dir/<sha256[:2]>/<sha256>.json`` (the SHA-256
  of the canonical request body: model, messages, sampling parameters), as
  ``{"request": body, "content": answer}``; a repeated request is answered from it. Each answer is
  stored as soon as it arrives, so answers already received survive a crash or a later fatal error.
  The caller can keep an unusable answer out of the cache (``complete(cacheable=...)``).
* **Counters**: :meth:`APIClient.stats` (calls, cache hits, HTTP requests, retries, failures).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import select
import ssl
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from sami.errors import SamiError
from sami.jsonl import JsonlFileError, read_json, write_json

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class APIError(SamiError, RuntimeError):
    """An endpoint cannot be used at all (bad configuration, missing key, wrong URL or model)."""


class APIAuthError(APIError):
    """The endpoint rejected the API key (HTTP 401/403)."""


class APIUnreachableError(APIError):
    """The endpoint could not be connected to after all retries."""


@dataclass(frozen=True)
class CompletionResult:
    """The answer to one chat request.

    Args:
        content: the completion text (``""`` when the request failed).
        error: why no answer came back (``"HTTP 500 after 5 attempts"``); ``None`` when it did.
        cached: answered from the on-disk cache, without a request.
    """

    content: str
    error: str | None = None
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None


class _Retryable(Exception):
    def __init__(self, message: str, delay: float | None = None, connection: bool = False):
        super().__init__(message)
        self.delay = delay
        self.connection = connection  # the endpoint could not be connected to at all


class _Failure(Exception):
    """One request ended without an answer; counted and returned, not fatal."""


class APIClient:
    """A pooled, retrying, caching client for one OpenAI-compatible endpoint.

    Args:
        base_url: endpoint root, e.g. ``"https://api.openai.com/v1"`` or ``"http://localhost:8000/v1"``;
            ``/chat/completions`` is appended unless already there. Azure OpenAI: the deployment's URL,
            ``https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT``, with ``api_version``.
        role: who uses the client, in messages and flag names: ``"judge"`` gives "the judge endpoint"
            and "check --judge_base_url".
        api_key_env: environment variable holding the key; ``None`` or ``""`` sends no key (a local
            server without authentication).
        api_version: Azure OpenAI's ``api-version`` (``"2024-10-21"``): sent as a query parameter, and
            the key goes in an ``api-key`` header instead of ``Authorization``.
        timeout: seconds per connect and per read of one attempt.
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors.
        backoff: first retry delay in seconds; doubles per retry (with jitter), capped at ``max_backoff``.
        max_backoff: cap on any delay, including a server's ``Retry-After``.
        max_concurrency: requests in flight at once, across all threads (and pooled connections).
        cache_dir: folder of the on-disk answer cache; ``None`` disables caching.
        extra_body: further fields of every request (``{"top_p": 0.9}``).

    Example:
        >>> client = APIClient("http://localhost:8000/v1", role="writer", api_key_env=None)  # doctest: +SKIP
        >>> messages = [{"role": "user", "content": "Hi"}]
        >>> client.complete(messages, model="m", max_tokens=8, temperature=0.0)  # doctest: +SKIP
        CompletionResult(content='Hello!', error=None, cached=False)
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        role: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_version: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_concurrency: int = 8,
        cache_dir: str | Path | None = None,
        extra_body: dict | None = None,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise APIError(f"the {role} client needs max_concurrency >= 1, max_retries >= 0 and timeout > 0")
        self.role = role
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise APIError(f"the {role} endpoint {base_url!r} is not an http(s) URL; check --{role}_base_url")
        self.api_key_env = api_key_env or None
        require_api_key(self.api_key_env, role=role)
        self.api_version = api_version
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_concurrency = max_concurrency
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.extra_body = dict(extra_body or {})
        query = parts.query
        if api_version:
            query = "&".join(filter(None, [query, urllib.parse.urlencode({"api-version": api_version})]))
        self._target = urllib.parse.urlunsplit(("", "", parts.path, query, ""))
        self._pool = _ConnectionPool(parts, timeout)
        weakref.finalize(self, self._pool.close)  # idle sockets close with the client
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._counts = {
            "calls": 0,  # complete() calls
            "cache_hits": 0,
            "requests": 0,  # HTTP attempts sent
            "retries": 0,
            "failures": 0,  # calls that ended without an answer
        }

    def __repr__(self) -> str:  # never shows the key
        return f"APIClient(url={self.url!r}, role={self.role!r}, api_key_env={self.api_key_env!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections (the client stays usable: it opens new ones)."""
        self._pool.close()

    # ------------------------------------------------------------------ public
    def complete(
        self,
        messages: list[dict],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        cacheable: Callable[[str], bool] | None = None,
    ) -> CompletionResult:
        """Send one chat request, or answer it from the cache.

        ``cacheable(answer)`` says whether an answer may be cached (default: every answer): an answer
        the caller cannot use (a judge's answer in the wrong format) is returned but not stored, and a
        stored one it rejects is asked again, so a rerun never repeats a useless answer from the cache.

        Raises:
            APIAuthError: the key was rejected. APIError: HTTP 404 (base URL or model name).
            APIUnreachableError: no connection after all retries.
        """
        self._count("calls")
        body = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
                **self.extra_body}
        if seed is not None:
            body["seed"] = seed
        key = request_key(body)
        cached = self._cache_get(key)
        if cached is not None and (cacheable is None or cacheable(cached)):
            self._count("cache_hits")
            return CompletionResult(cached, cached=True)
        try:
            content = self._post_with_retries(body)
        except _Failure as failure:
            self._count("failures")
            logger.warning("%s request failed: %s", self.role, failure)
            return CompletionResult("", str(failure))
        if cacheable is None or cacheable(content):
            self._cache_put(key, body, content)
        return CompletionResult(content)

    def stats(self) -> dict:
        """The counters: calls, cache_hits, requests (HTTP attempts), retries, failures."""
        with self._lock:
            return dict(self._counts)

    # ----------------------------------------------------------------- HTTP
    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "")
            if self.api_version:
                headers["api-key"] = key
            else:
                headers["Authorization"] = "Bearer " + key
        return headers

    def _post_with_retries(self, body: dict) -> str:
        data = json.dumps(body).encode("utf-8")
        only_connection_errors = True
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(data, body["model"])
            except _Retryable as error:
                last = str(error)
                only_connection_errors &= error.connection
                if attempt == self.max_retries:
                    break
                delay = error.delay if error.delay is not None else self.backoff * 2**attempt * (0.5 + random.random())
                delay = max(0.0, min(delay, self.max_backoff))
                self._count("retries")
                logger.warning("%s request: %s; retry %d/%d in %.2fs", self.role, last, attempt + 1,
                               self.max_retries, delay)
                time.sleep(delay)
        attempts = self.max_retries + 1
        if only_connection_errors:
            raise APIUnreachableError(
                f"cannot reach the {self.role} endpoint {self.url} after {attempts} attempts ({last}); "
                f"check --{self.role}_base_url and that the server is running"
            )
        raise _Failure(f"{last} after {attempts} attempts")

    def _post_once(self, data: bytes, model: str) -> str:
        with self._slots:
            try:
                status, headers, payload = self._exchange(data)
            finally:
                self._count("requests")
        if status in (401, 403):
            raise APIAuthError(
                f"the {self.role} endpoint {self.url} rejected the API key from ${self.api_key_env} "
                f"(HTTP {status}): wrong key, or no access to model {model!r}; set {self.api_key_env} to a valid key"
            )
        detail = payload[:200].decode("utf-8", "replace")
        if status == 404:
            raise APIError(
                f"the {self.role} endpoint {self.url} answered HTTP 404 ({detail}); check --{self.role}_base_url "
                f"(usually ending in /v1) and the model name {model!r}"
            )
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", delay=parse_retry_after(headers))
        if not 200 <= status < 300:
            raise _Failure(f"HTTP {status}: {detail}")
        try:
            answer = json.loads(payload)
            content = answer["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise _Failure(f"malformed response body ({type(error).__name__}: {error}): {payload[:200]!r}") from None
        return content

    def _exchange(self, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One POST on a pooled connection: (status, headers, body)."""
        connection = self._pool.take()
        if connection.sock is not None:
            answer = self._send(connection, data, reused=True)
            if answer is not None:
                return answer
            connection = self._pool.new()  # the server had closed the idle connection as we reused it
        self._connect(connection)
        answer = self._send(connection, data, reused=False)
        assert answer is not None  # a new connection answers or raises
        return answer

    def _send(
        self, connection: http.client.HTTPConnection, data: bytes, *, reused: bool
    ) -> tuple[int, http.client.HTTPMessage, bytes] | None:
        """The exchange on an open connection, given back to the pool once the answer is read in full;
        ``None`` when a reused connection turns out to be closed."""
        try:
            connection.request("POST", self._pool.request_target(self._target), body=data,
                               headers={**self._headers(), **self._pool.proxy_headers})
            response = connection.getresponse()
            payload = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            connection.close()
            if reused:
                return None
            raise _Retryable(f"connection error: {type(error).__name__}: {error}") from None
        except TimeoutError:
            connection.close()
            raise _Retryable(f"timed out after {self.timeout}s") from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _Retryable(f"connection error: {type(error).__name__}: {error}") from None
        self._pool.give_back(connection)
        return response.status, response.headers, payload

    def _connect(self, connection: http.client.HTTPConnection) -> None:
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise _Retryable(f"timed out after {self.timeout}s") from None
        except OSError as error:  # refused, unknown host, TLS failure
            connection.close()
            raise _Retryable(f"connection error: {error}", connection=True) from None

    # ---------------------------------------------------------------- cache
    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return read_json(path, what=f"{self.role} cache entry")["content"]
        except (JsonlFileError, KeyError, TypeError):
            return None  # a damaged entry is re-requested and overwritten

    def _cache_put(self, key: str, body: dict, content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        with self._cache_lock:  # two threads answering the same request write one entry, one after the other
            write_json({"request": body, "content": content}, path)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


class _ConnectionPool:
    """Idle keep-alive connections to one endpoint (through the environment's proxy, if any).

    A request takes a connection (an idle one, or a new one) and gives it back when its answer has been
    read in full; a connection that failed is closed instead, never given back.
    """

    def __init__(self, parts: urllib.parse.SplitResult, timeout: float) -> None:
        self._timeout = timeout
        self._https = parts.scheme == "https"
        self._ssl = ssl.create_default_context() if self._https else None
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self.proxy_headers: dict[str, str] = {}  # for a plain-HTTP request through a proxy
        self._tunnel_headers: dict[str, str] = {}  # for the CONNECT of an HTTPS request through a proxy
        self._proxy: tuple[str, int] | None = None
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.netloc):
            proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            self._proxy = (proxy_parts.hostname, proxy_parts.port or 80)
            if proxy_parts.username:
                user, password = (urllib.parse.unquote(p or "") for p in (proxy_parts.username, proxy_parts.password))
                credentials = f"{user}:{password}"
                auth = {"Proxy-Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
                if self._https:
                    self._tunnel_headers = auth
                else:
                    self.proxy_headers = auth
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request_target(self, path: str) -> str:
        """What goes on the request line: the path, or the absolute URL for a plain-HTTP proxy."""
        return self._origin + path if self._proxy and not self._https else path

    def take(self) -> http.client.HTTPConnection:
        """An idle connection that is still open, else a new (not yet connected) one."""
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if _still_open(connection):
                    return connection
                connection.close()
        return self.new()

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        if connection.sock is None:  # the server said "Connection: close"
            return
        with self._lock:
            self._idle.append(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def new(self) -> http.client.HTTPConnection:
        """A new connection, not yet connected."""
        host, port = self._proxy or (self._host, self._port)
        if self._ssl is None:
            return http.client.HTTPConnection(host, port, timeout=self._timeout)
        connection = http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._ssl)
        if self._proxy:
            connection.set_tunnel(self._host, self._port, headers=self._tunnel_headers)
        return connection


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle connection is usable while its socket has nothing to read: readable means the server closed it."""
    if connection.sock is None:
        return False
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def require_api_key(api_key_env: str | None, *, role: str) -> None:
    """Raise :class:`APIError` when the variable that should hold the API key is not set (``None``: no key)."""
    if api_key_env and not os.environ.get(api_key_env):
        raise APIError(
            f"the {role}'s API key is read from the environment variable {api_key_env}, which is not set; "
            f"export {api_key_env}=... (or name another variable with --{role}_api_key_env, "
            "or pass an empty name for a server without authentication)"
        )


def request_key(body: dict) -> str:
    """SHA-256 of the canonical JSON of a request body: the cache key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date); ``None`` if absent or unreadable."""
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
