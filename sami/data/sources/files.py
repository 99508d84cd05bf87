"""User query files: JSONL, JSON, CSV or TXT, with an optional ``id`` and ``split`` column
(see ``docs/data.md``)."""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from sami.data.common import Query, QueryFileNotFoundError, QueryValueError, split_matches
from sami.jsonl import JsonlFileError, read_json, read_jsonl
from sami.textfile import read_utf8

logger = logging.getLogger(__name__)

SPECS = ()
SUFFIXES = (".jsonl", ".json", ".csv", ".txt")
DEFAULT_COLUMNS = ("query", "text", "prompt")


def claims(spec: str) -> bool:
    """An existing path, or one that looks like a path (``file:``, a known suffix, a separator)."""
    raw = spec.removeprefix("file:")
    return (
        spec.startswith("file:")
        or Path(raw).expanduser().exists()
        or Path(raw).suffix.lower() in SUFFIXES
        or os.sep in raw
        or "/" in raw
    )


def task(spec: str) -> None:
    return None


def load(
    spec: str,
    split: str,
    *,
    column: str | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Query]:
    """The file's rows in ``split``, their text from ``column`` (default: the first of
    ``query``, ``text``, ``prompt`` that the file has). IDs come from an ``id`` column, else
    ``<file stem>-<row number>``, numbered before any split filtering."""
    raw = spec.removeprefix("file:")
    path = Path(raw).expanduser()
    if not path.exists():
        raise QueryFileNotFoundError(f"query file {raw!r} not found; check the path (relative to {os.getcwd()})")
    if path.is_dir():
        raise QueryValueError(f"{raw!r} is a directory; give a {'/'.join(SUFFIXES)} file")
    records = _read_records(path)
    if not records:
        raise QueryValueError(f"{raw}: the file has no rows; add queries, one per row")
    source = f"file:{raw}"
    if all(isinstance(r, str) for r in records):  # TXT, or a JSON list of strings
        if split == "eval":
            raise QueryValueError(_no_split_message(raw))
        return [
            Query(f"{path.stem}-{number:05d}", r.strip(), source)
            for number, r in enumerate(records, start=1)
            if r.strip()
        ]
    if not all(isinstance(r, dict) for r in records):
        raise QueryValueError(f"{raw}: mix of records and bare values; make every row an object with a text column")
    return _queries_from_records(records, raw, path.stem, source, split, column)


def _read_records(path: Path) -> list[Any]:
    """Rows of a query file: dicts (JSONL / JSON / CSV) or plain strings (TXT, JSON list of strings)."""
    try:
        return _read_rows(path)
    except UnicodeDecodeError:  # from the JSON readers, without the file's name
        read_utf8(path, "query file", QueryValueError)  # raises, naming the file and line
        raise


def _read_rows(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        try:
            data = read_json(path, what="query file")
        except JsonlFileError:
            return _read_jsonl(path)  # JSON lines saved as .json (as summarize_from_feedback does)
        if isinstance(data, dict):
            lists = [key for key, value in data.items() if isinstance(value, list)]
            if len(lists) != 1:
                raise QueryValueError(
                    f"{path}: expected a JSON list of records (or an object holding exactly one list), "
                    f"found an object with keys {sorted(data)}"
                )
            data = data[lists[0]]
        if not isinstance(data, list):
            raise QueryValueError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
        return data
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(read_utf8(path, "query file", QueryValueError), newline="")))
    if suffix == ".txt":  # one query per non-empty line
        return [line for line in read_utf8(path, "query file", QueryValueError).splitlines() if line.strip()]
    raise QueryValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")


def _read_jsonl(path: Path) -> list[Any]:
    try:
        return read_jsonl(path, torn_tail="error", what="query file")
    except JsonlFileError as error:
        raise QueryValueError(str(error)) from None


def _queries_from_records(
    records: list[dict], raw: str, stem: str, source: str, split: str, column: str | None
) -> list[Query]:
    available = list(dict.fromkeys(key for record in records for key in record))
    if column is None:
        column = next((c for c in DEFAULT_COLUMNS if c in available), None)
        if column is None:
            raise QueryValueError(
                f"{raw}: no 'query', 'text' or 'prompt' column; pass --query_column (column= in Python) naming "
                f"one of {available}"
            )
    elif column not in available:
        raise QueryValueError(
            f"{raw}: no column {column!r}; available columns: {available} (pass one with --query_column)"
        )
    has_split = "split" in available
    if not has_split and split == "eval":
        raise QueryValueError(_no_split_message(raw))

    queries, ids, skipped, in_split = [], set(), 0, 0
    for number, record in enumerate(records, start=1):  # numbered before filtering, so ids do not depend on split
        if has_split and not _in_split(record.get("split"), split, raw, number):
            continue
        in_split += 1
        value = record.get(column)
        if value is not None and not isinstance(value, (str, int, float)):
            raise QueryValueError(f"{raw}: row {number}: column {column!r} holds a {type(value).__name__}, not text")
        text = str(value).strip() if value is not None else ""
        if not text:
            skipped += 1
            continue
        query_id = str(record["id"]) if record.get("id") not in (None, "") else f"{stem}-{number:05d}"
        if query_id in ids:
            raise QueryValueError(f"{raw}: row {number}: duplicate id {query_id!r}; ids must be unique")
        ids.add(query_id)
        queries.append(Query(query_id, text, source))
    if not in_split:
        raise QueryValueError(f"{raw}: no rows with split {split!r}; its 'split' column should say train or eval")
    if not queries:
        raise QueryValueError(f"{raw}: column {column!r} is empty in every row; pick another of {available}")
    if skipped:
        logger.warning("%s: skipped %d rows with an empty %r", raw, skipped, column)
    return queries


def _in_split(row_split: Any, split: str, raw: str, number: int) -> bool:
    """Whether a row belongs to ``split``; an empty ``split`` cell means train."""
    try:
        return split_matches(str(row_split or "train"), split)
    except QueryValueError:
        raise QueryValueError(
            f"{raw}: row {number}: split {row_split!r} is not train or eval; fix the 'split' column"
        ) from None


def _no_split_message(raw: str) -> str:
    return (
        f"{raw}: the file has no 'split' column, so it has no eval rows; add a 'split' column "
        "(train/eval), pass a separate eval file, or use split_queries(load_queries(..., 'all'))"
    )
