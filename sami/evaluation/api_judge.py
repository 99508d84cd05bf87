"""A judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

Requests go through :class:`sami.api_client.APIClient` (pooled keep-alive connections, bounded
retries, the on-disk answer cache, counters; the key read from an environment variable and never
stored or logged). The client's fatal errors reach the caller as the judge's:
:class:`~sami.evaluation.judges.JudgeAuthError` (401/403, naming the variable),
:class:`~sami.evaluation.judges.JudgeError` (404: wrong base URL or model name; a missing key) and
:class:`~sami.evaluation.judges.JudgeUnreachableError` (no connection after all retries), each also
an instance of the client's error. A request that ends without an answer otherwise (retries used
up on 429/5xx/timeout, a malformed body, a 400) returns an ``"unparsed"`` result with ``error``
set, counted in :meth:`APIJudge.stats` as a failure, apart from answers in the wrong format
(``parse_failures``). Only answers in the expected format are cached: a failure or an answer in the
wrong format is asked again by a rerun.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sami.api_client import DEFAULT_BASE_URL, APIAuthError, APIClient, APIError, APIUnreachableError
from sami.api_client import require_api_key as _require_key
from sami.evaluation.judges import JudgeAuthError, JudgeError, JudgeResult, JudgeUnreachableError
from sami.evaluation.templates import judge_template, parse_verdict, render_judge_prompt

DEFAULT_SYSTEM_PROMPT = "You are a careful, impartial evaluator of AI assistant responses."


class APIJudge:
    """Judge with a chat model behind an OpenAI-compatible endpoint.

    Args:
        model: model name sent in the request (``"gpt-4-0613"`` in the paper).
        base_url: endpoint root, e.g. ``"https://api.openai.com/v1"`` or ``"http://localhost:8000/v1"``;
            ``/chat/completions`` is appended unless already there.
        api_key_env: environment variable holding the key. ``None`` or ``""`` sends no key (a local
            server without authentication).
        api_version: Azure OpenAI's ``api-version`` (the key then goes in an ``api-key`` header).
        template: ``"dialogue"``, ``"summarisation"`` or a custom template string
            (see :mod:`sami.evaluation.templates`).
        system_prompt: system message; ``None`` sends none.
        temperature: sampling temperature (0: deterministic, as cached).
        max_tokens: completion budget; the templates ask for a short comparison and a final line.
        timeout: seconds per connect and per read of one HTTP attempt.
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
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_version: str | None = None,
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
            raise JudgeError("APIJudge needs a model name (--judge_model)")
        with _judge_errors():
            self.client = APIClient(
                base_url, role="judge", api_key_env=api_key_env, api_version=api_version, timeout=timeout,
                max_retries=max_retries, backoff=backoff, max_backoff=max_backoff, max_concurrency=max_concurrency,
                cache_dir=cache_dir, extra_body=extra_body,
            )
        self.model = model
        self.template = judge_template(template)
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.name = name or f"api:{model}"
        self._lock = threading.Lock()
        self._parse_failures = 0  # answers not in the expected format

    def __repr__(self) -> str:  # never shows the key
        return f"APIJudge(model={self.model!r}, url={self.client.url!r}, api_key_env={self.client.api_key_env!r})"

    def prompt(self, query: str, constitution: str, response_a: str, response_b: str) -> str:
        """The user message sent to the judge."""
        return render_judge_prompt(self.template, query, constitution, response_a, response_b)

    def judge(self, query: str, constitution: str, response_a: str, response_b: str) -> JudgeResult:
        messages = [{"role": "user", "content": self.prompt(query, constitution, response_a, response_b)}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        with _judge_errors():
            result = self.client.complete(messages, model=self.model, max_tokens=self.max_tokens,
                                          temperature=self.temperature, cacheable=_in_format)
        if result.failed:
            return JudgeResult("unparsed", result.content, result.error)
        verdict = parse_verdict(result.content)
        if verdict == "unparsed":
            with self._lock:
                self._parse_failures += 1
        return JudgeResult(verdict, result.content, None)

    def stats(self) -> dict:
        """The client's counters (calls, cache_hits, requests, retries, failures) and parse_failures."""
        with self._lock:
            return {"judge": self.name, **self.client.stats(), "parse_failures": self._parse_failures}


def _in_format(answer: str) -> bool:
    """Whether an answer ends in a verdict; one that does not is not cached, so a rerun asks again."""
    return parse_verdict(answer) != "unparsed"


@contextlib.contextmanager
def _judge_errors() -> Iterator[None]:
    """The API client's fatal errors, raised as the judge's (each also an instance of the client's)."""
    try:
        yield
    except APIAuthError as error:
        raise JudgeAuthError(str(error)) from None
    except APIUnreachableError as error:
        raise JudgeUnreachableError(str(error)) from None
    except APIError as error:
        raise JudgeError(str(error)) from None


def require_api_key(api_key_env: str | None) -> None:
    """Raise :class:`JudgeError` when the variable that should hold the judge's key is not set (``None``: no key)."""
    with _judge_errors():
        _require_key(api_key_env, role="judge")
