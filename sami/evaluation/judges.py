"""The judge interface and the record of one judged pair.

A judge answers one question: given a query, the constitution and two responses, which response
follows the constitution better? It returns a :class:`JudgeResult` (``"A"``, ``"B"``, ``"tie"``
or ``"unparsed"``, plus its raw output). :mod:`sami.evaluation.pairwise` turns each answer into
a :class:`Verdict` seen from the candidate's side (win / loss / tie / unparsed), and
:mod:`sami.evaluation.winrates` aggregates verdicts into win rates.

Backends: :class:`~sami.evaluation.api_judge.APIJudge` (any OpenAI-compatible endpoint) and
:class:`~sami.evaluation.local_judge.LocalJudge` (a Hugging Face model, offline).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Literal, Protocol, runtime_checkable

JudgeVerdict = Literal["A", "B", "tie", "unparsed"]
Outcome = Literal["win", "loss", "tie", "unparsed"]

OUTCOME_SCORES: dict[str, float] = {"win": 1.0, "loss": 0.0, "tie": 0.5, "unparsed": 0.5}
"""Score of each outcome. Unparsed verdicts score 0.5 as in the paper, but are always counted
and reported apart from ties (the paper's evaluation protocol): never a silent 0.5."""


class JudgeError(RuntimeError):
    """A judge cannot work at all (bad configuration, wrong key, unreachable endpoint)."""


class JudgeAuthError(JudgeError):
    """The endpoint rejected the API key (HTTP 401/403)."""


class JudgeUnreachableError(JudgeError):
    """The endpoint could not be reached after all retries."""


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


@dataclass
class Verdict:
    """One judged comparison of a candidate response against a baseline response.

    ``pair_id`` identifies the (query, constitution) pair; with ``both_orders`` a pair has two
    verdicts, one per position, that the win-rate functions average before any statistics.
    ``score`` is 1 (win), 0 (loss), 0.5 (tie) or 0.5 (unparsed, counted apart).
    """

    pair_id: str
    query_id: str
    query: str
    constitution: str
    candidate: str
    baseline: str
    candidate_response: str
    baseline_response: str
    candidate_position: Literal["A", "B"]
    judge: str
    judge_verdict: JudgeVerdict
    outcome: Outcome
    score: float
    raw: str
    error: str | None = None
    principles: list[str] = field(default_factory=list)
    affirmed: list[bool] = field(default_factory=list)
    split: str | None = None
    candidate_words: int = 0
    baseline_words: int = 0
    candidate_tokens: int | None = None
    baseline_tokens: int | None = None
    prompt: str | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        record = {k: v for k, v in data.items() if k in known}
        if unknown:  # records written by a newer sami keep their extra keys
            record.setdefault("meta", {}).update({k: data[k] for k in unknown})
        return cls(**record)


def outcome_of(verdict: JudgeVerdict, candidate_position: str) -> Outcome:
    """The candidate's outcome from the judge's A/B verdict and the candidate's position."""
    if verdict in ("tie", "unparsed"):
        return verdict
    return "win" if verdict == candidate_position else "loss"


def write_verdicts(verdicts: Iterable[Verdict], path: str | Path) -> Path:
    """Write verdicts as JSONL (one record per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for verdict in verdicts:
            handle.write(json.dumps(verdict.to_dict(), ensure_ascii=False) + "\n")
    return path


def read_verdicts(path: str | Path) -> list[Verdict]:
    """Read a JSONL file written by :func:`write_verdicts`."""
    verdicts = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    verdicts.append(Verdict.from_dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError) as error:
                    raise ValueError(f"{path}:{number}: not a verdict record ({error})") from error
    return verdicts
