"""The records sami writes, one typed class each: generations, responses and verdicts.

* :class:`GenerationRecord`: one line of a generations file (``sami generate``, ``sami run``): a
  query, its C constitutions and the C responses (response j was written under constitution j).
  It is the training data.
* :class:`ResponseRecord`: one response to one (query, constitution) pair, what ``sami evaluate``
  compares; a generations record flattens into C of them.
* :class:`Verdict`: one judged comparison of a candidate's response with a baseline's.

Each class has ``from_dict`` (the one validation: every field present and of its declared type,
an integer ``query_id`` read as text; an error names the file, the record and the field to fix)
and ``to_dict``; files are read and written through :mod:`sami.jsonl`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

from sami.errors import SamiError
from sami.jsonl import read_jsonl, write_jsonl


class RecordError(SamiError, ValueError):
    """A record lacks a field or holds inconsistent values."""


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


@cache
def _required_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)


@cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _require(data: Any, keys: tuple[str, ...], where: str, hint: str) -> None:
    if not isinstance(data, dict):
        raise RecordError(f"{where} is a {type(data).__name__}, not a JSON object; {hint}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise RecordError(f"{where} lacks the field(s) {missing}; {hint}")


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a field's type (``str | None``, ``list[int]``, ``Literal[...]``, ``dict``, ...)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list or annotation is list:
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, float):
        numbers = int if annotation is int else (int, float)
        return isinstance(value, numbers) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def _describe(annotation: Any, plural: bool = False) -> str:
    """A field's type in words: ``text or null``, ``a list of integers``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is list or annotation is list:
        return f"a list of {_describe(args[0], plural=True)}" if args else "a list"
    singular = {str: "text", int: "an integer", float: "a number", bool: "true/false", dict: "an object",
                type(None): "null"}
    several = {str: "strings", int: "integers", float: "numbers", bool: "booleans", dict: "objects",
               type(None): "nulls"}
    return (several if plural else singular).get(annotation, getattr(annotation, "__name__", str(annotation)))


def _check_types(cls: type, data: dict, name: str, hint: str) -> None:
    """Raise :class:`RecordError` naming the first field of ``data`` whose value does not fit ``cls``'s type."""
    for key, annotation in _field_types(cls).items():
        if key in data and not _matches(data[key], annotation):
            shown = repr(data[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise RecordError(
                f"{name}: field {key!r} is {shown} ({type(data[key]).__name__}), expected {_describe(annotation)}; "
                f"{hint}"
            )


def _query_id(data: dict) -> dict:
    """``data`` with an integer ``query_id`` as text (ids read from CSV or written by hand may be numbers)."""
    query_id = data.get("query_id")
    if isinstance(query_id, int) and not isinstance(query_id, bool):
        return {**data, "query_id": str(query_id)}
    return data


# ---------------------------------------------------------------------------------- generations


@dataclass(kw_only=True)
class GenerationRecord:
    """One query with its C constitutions and C responses.

    ``constitutions[j]`` is ``{"stances": [{"name", "affirmed", "text"}, ...], "text": rendered}``;
    ``responses[j]`` was generated under it (``None``: a chain-of-thought output without its answer
    marker). ``dropped`` is the filter rule the record broke, or ``None`` when it is training data.
    The fields are in the order of a line of a generations file (keyword-only, so required and
    optional fields can interleave).
    """

    query_id: str
    query: str
    task: str | None = None
    template: dict
    constitutions: list[dict]
    prompts: list[str] = field(default_factory=list)
    responses: list[str | None]
    reasoning: list[str | None] = field(default_factory=list)
    response_tokens: list[int] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    dropped: str | None = None

    REQUIRED = ("query_id", "query", "template", "constitutions", "responses")

    @property
    def num_constitutions(self) -> int:
        return len(self.constitutions)

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> GenerationRecord:
        """Validate the structure of a generations record (see :meth:`check_trainable` for training)."""
        hint = "is it a generations record from `sami generate`?"
        _require(data, cls.REQUIRED, where, hint)
        data = _query_id(data)
        name = f"{where} (query_id={data['query_id']!r})"
        _check_types(cls, data, name, hint)
        known = _field_names(cls)
        record = cls(**{k: v for k, v in data.items() if k in known})
        C = record.num_constitutions
        if len(record.responses) != C:
            raise RecordError(
                f"{name} has {C} constitutions but {len(record.responses)} responses; one per constitution"
            )
        for key in ("prompts", "reasoning", "response_tokens", "finish_reasons"):
            value = getattr(record, key)
            if value and len(value) != C:
                raise RecordError(f"{name} has {C} constitutions but {len(value)} {key}; one per constitution")
        return record

    def check_trainable(self, where: str = "record") -> None:
        """Raise :class:`RecordError` unless SAMI can train on this record (C >= 2, non-empty responses)."""
        from sami.generation.prompts import PromptTemplate

        name = f"{where} (query_id={self.query_id!r})"
        if self.num_constitutions < 2:
            raise RecordError(
                f"{name} has {self.num_constitutions} constitution(s); SAMI contrasts at least 2 per query"
            )
        for j, response in enumerate(self.responses):
            if not isinstance(response, str) or not response.strip():
                raise RecordError(
                    f"{name}: response {j} is empty; an empty response has no log-probability. Drop the record with "
                    "the generation filters (they count what they drop), or remove it from the file"
                )
        try:
            PromptTemplate(**self.template)
        except (TypeError, ValueError) as error:
            raise RecordError(f"{name} has an invalid template {self.template!r}: {error}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def response_records(self) -> list[ResponseRecord]:
        """The C responses as flat :class:`ResponseRecord` s (``None`` answers become ``""``)."""
        tokens = self.response_tokens or [None] * self.num_constitutions
        reasons = self.finish_reasons or [None] * self.num_constitutions
        out = []
        for constitution, response, count, reason in zip(self.constitutions, self.responses, tokens, reasons):
            stances = constitution.get("stances", [])
            out.append(ResponseRecord(
                query_id=str(self.query_id),
                query=self.query,
                constitution=constitution.get("text") or "",
                response=response or "",
                principles=[s["name"] for s in stances],
                affirmed=[bool(s["affirmed"]) for s in stances],
                response_tokens=count,
                finish_reason=reason,
            ))
        return out


def _rows(source: str | Path, what: str, missing: Literal["error", "empty"] = "error") -> list[dict]:
    """The rows of a JSONL file (read by :func:`sami.jsonl.read_jsonl`: a torn last line is dropped), or of any
    other record source: a ``.parquet``/``.csv``/``.arrow`` file, a ``datasets`` folder or a hub dataset id
    (:func:`sami.record_sources.read_rows`, held-out splits first)."""
    from sami.models.options import is_hub_id
    from sami.record_sources import DATA_FILE_TYPES, EVAL_SPLITS, read_rows

    path = Path(source).expanduser()
    dataset = path.is_dir() or (path.is_file() and path.suffix in DATA_FILE_TYPES)
    if dataset or is_hub_id(str(source).rpartition(":")[0] or str(source)):
        return read_rows(source, splits=EVAL_SPLITS, what=what)
    return read_jsonl(path, missing=missing, what=what)


def read_generations(path: str | Path, *, missing: Literal["error", "empty"] = "error") -> list[GenerationRecord]:
    """The records of a generations file (JSONL; a torn last line is dropped), a datasets folder or a hub dataset
    id, validated; a dataset with several splits gives its held-out one (``eval``, ``test``, ``validation``)."""
    rows = _rows(path, "generations file", missing)
    return [GenerationRecord.from_dict(row, f"{path}: record {n}") for n, row in enumerate(rows, start=1)]


# ---------------------------------------------------------------------------------- responses


@dataclass
class ResponseRecord:
    """One response to one (query, constitution) pair."""

    query_id: str
    query: str
    constitution: str
    response: str
    principles: list[str] = field(default_factory=list)
    affirmed: list[bool] = field(default_factory=list)
    split: str | None = None
    response_tokens: int | None = None
    finish_reason: str | None = None

    REQUIRED = ("query_id", "query", "constitution", "response")

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> ResponseRecord:
        hint = (
            "a response file holds JSONL records of {query_id, query, constitution, response} "
            "(or the records `sami generate` writes)"
        )
        _require(data, cls.REQUIRED, where, hint)
        data = _query_id(data)
        if data["response"] is None:  # a chain-of-thought output without its answer: an empty response
            data = {**data, "response": ""}
        _check_types(cls, data, f"{where} (query_id={data['query_id']!r})", hint)
        known = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def response_records(rows: list[dict], source: str = "responses") -> list[ResponseRecord]:
    """Flat response records from either format: flat records, or ``sami generate``'s per-query records."""
    out: list[ResponseRecord] = []
    for number, row in enumerate(rows, start=1):
        where = f"{source}: record {number}"
        if isinstance(row, dict) and "constitutions" in row and "responses" in row:
            out += GenerationRecord.from_dict(row, where).response_records()
        else:
            out.append(ResponseRecord.from_dict(row, where))
    return out


def read_responses(path: str | Path) -> list[ResponseRecord]:
    """The responses of a response file or generations: JSONL, a datasets folder or a hub dataset id (held-out
    split first, as :func:`read_generations`); no responses is an error."""
    rows = _rows(path, "response file")
    if not rows:
        raise RecordError(f"response file {path} is empty; generate responses first")
    return response_records(rows, str(path))


# ---------------------------------------------------------------------------------- verdicts

JudgeVerdict = Literal["A", "B", "tie", "unparsed"]
Outcome = Literal["win", "loss", "tie", "unparsed"]


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
    def from_dict(cls, data: dict, where: str = "verdict") -> Verdict:
        required = _required_names(cls)
        hint = "is it a verdicts file written by `sami evaluate`?"
        _require(data, required, where, hint)
        _check_types(cls, data, f"{where} (pair_id={data['pair_id']!r})", hint)
        known = _field_names(cls)
        unknown = set(data) - known
        record = {k: v for k, v in data.items() if k in known}
        if unknown:  # records written by a newer sami keep their extra keys
            record.setdefault("meta", {}).update({k: data[k] for k in unknown})
        return cls(**record)


def read_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts of a file written by :func:`write_verdicts`."""
    rows = read_jsonl(path, what="verdicts file")
    return [Verdict.from_dict(row, f"{path}: record {n}") for n, row in enumerate(rows, start=1)]


def write_verdicts(verdicts: list[Verdict], path: str | Path) -> Path:
    """Write verdicts as JSONL, atomically."""
    return write_jsonl([v.to_dict() for v in verdicts], path)
