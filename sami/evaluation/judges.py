"""The judge interface, its errors and the outcome of one judgement.

A judge answers one question: given a query, the constitution and two responses, which response
follows the constitution better? It returns a :class:`JudgeResult` (``"A"``, ``"B"``, ``"tie"``
or ``"unparsed"``, plus its raw output). :mod:`sami.evaluation.pairwise` turns each answer into
a :class:`~sami.records.Verdict` seen from the candidate's side (win / loss / tie / unparsed), and
:mod:`sami.evaluation.winrates` aggregates verdicts into win rates.

Backends: :class:`~sami.evaluation.api_judge.APIJudge` (any OpenAI-compatible endpoint) and
:class:`~sami.evaluation.local_judge.LocalJudge` (a Hugging Face model, offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sami.api_client import APIAuthError, APIUnreachableError
from sami.errors import SamiError
from sami.records import JudgeVerdict, Outcome

OUTCOME_SCORES: dict[str, float] = {"win": 1.0, "loss": 0.0, "tie": 0.5, "unparsed": 0.5}
"""Score of each outcome. Unparsed verdicts score 0.5 as in the paper, but are always counted
and reported apart from ties (the paper's evaluation protocol): never a silent 0.5."""


class JudgeError(SamiError, RuntimeError):
    """A judge cannot work at all (bad configuration, wrong key, unreachable endpoint)."""


class JudgeAuthError(JudgeError, APIAuthError):
    """The judge's endpoint rejected the API key (HTTP 401/403)."""


class JudgeUnreachableError(JudgeError, APIUnreachableError):
    """The judge's endpoint could not be reached after all retries."""


class TooManyUnparsedError(JudgeError):
    """More verdicts were unparsed or failed than the allowed fraction."""


@dataclass(frozen=True)
class JudgeResult:
    """One judge answer.

    Args:
        verdict: ``"A"``, ``"B"``, ``"tie"``, or ``"unparsed"`` when the output did not follow the
            expected format or the request failed.
        raw: the judge's raw output (the completion text, or the local judge's probabilities as JSON).
        error: why no answer came back (``"HTTP 500 after 4 attempts"``); ``None`` when the judge
            answered, even if its answer was unparsed.
    """

    verdict: JudgeVerdict
    raw: str
    error: str | None = None

    @property
    def failed(self) -> bool:
        """The request itself failed (as opposed to an answer in the wrong format)."""
        return self.error is not None


@runtime_checkable
class Judge(Protocol):
    """Anything that compares two responses under a constitution.

    ``name`` identifies the judge in records; ``max_concurrency`` is how many calls may run at
    once (1 for a local model; the thread pool of :func:`~sami.evaluation.pairwise.compare`
    never exceeds it); ``stats()`` returns counters for the summary.
    """

    name: str
    max_concurrency: int

    def judge(self, query: str, constitution: str, response_a: str, response_b: str) -> JudgeResult: ...

    def stats(self) -> dict: ...


def count_words(text: str) -> int:
    """Whitespace-separated words: the length measure of the length-corrected win rates."""
    return len(text.split())


def outcome_of(verdict: JudgeVerdict, candidate_position: str) -> Outcome:
    """The candidate's outcome from the judge's A/B verdict and the candidate's position."""
    if verdict in ("tie", "unparsed"):
        return verdict
    return "win" if verdict == candidate_position else "loss"
