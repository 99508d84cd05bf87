"""JSON Lines and JSON files: the one place sami reads and writes them.

Every file sami writes goes through here, with one policy each:

* :func:`read_jsonl` reads a file, with explicit choices for a missing file (an error, or no
  records) and for a torn last line (a run killed mid-write: dropped with a warning, or an
  error). A bad line anywhere else is always an error naming the file and line.
* :func:`write_jsonl` / :func:`write_json` (and :func:`write_text` for other formats) write
  atomically: a ``<name>.partial`` file, fsynced, renamed into place, so a reader never sees half a
  file (a killed writer leaves only the ``.partial`` file, which a resumed run deletes).
* :class:`JsonlAppender` appends records to a file that grows while a long job runs; each
  :meth:`~JsonlAppender.commit` flushes and fsyncs, so a crash loses only uncommitted records.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from sami.errors import MissingFileError, SamiError
from sami.textfile import read_utf8

__all__ = ["JsonlAppender", "JsonlFileError", "MissingFileError", "drop_torn_tail", "read_json", "read_jsonl",
           "write_json", "write_jsonl", "write_text"]

logger = logging.getLogger(__name__)


class JsonlFileError(SamiError, ValueError):
    """A JSON(L) file holds something that is not valid JSON."""


def read_jsonl(
    path: str | Path,
    *,
    missing: Literal["error", "empty"] = "error",
    torn_tail: Literal["drop", "error"] = "drop",
    what: str = "records file",
) -> list[dict]:
    """The records of a JSONL file, in file order; blank lines are skipped.

    Args:
        path: the file.
        missing: ``"error"`` raises :class:`MissingFileError`; ``"empty"`` returns ``[]``.
        torn_tail: ``"drop"`` ignores an unparsable *last* line with a warning (what a killed
            writer leaves); ``"error"`` raises on it like on any other bad line.
        what: how error messages name the file (``"generations file"``).
    """
    path = Path(path)
    if not path.is_file():
        if missing == "empty" and not path.exists():
            return []
        raise MissingFileError(f"{what} {str(path)!r} not found; check the path")
    records, lines = [], read_utf8(path, what, JsonlFileError).splitlines()
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == last and torn_tail == "drop":
                logger.warning("%s: ignoring a torn last line (a run was interrupted mid-write)", path)
                continue
            raise JsonlFileError(
                f"{path}:{number} is not valid JSON ({error.msg}); fix or remove the line, or regenerate the file"
            ) from None
    return records


def read_json(path: str | Path, *, what: str = "file") -> Any:
    """The parsed contents of a JSON file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {str(path)!r} not found; check the path")
    try:
        return json.loads(read_utf8(path, what, JsonlFileError))
    except json.JSONDecodeError as error:
        raise JsonlFileError(f"{path} is not valid JSON ({error.msg}); fix it or regenerate it") from None


def _dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False)


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write records atomically (a temporary file renamed into place); create the folder."""
    return write_text("".join(_dumps(r) + "\n" for r in records), path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write one JSON document atomically, indented for people to read."""
    return write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", path)


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file (UTF-8) atomically; create the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    return path


def drop_torn_tail(path: str | Path) -> None:
    """Cut a last line that a killed writer left half-written, so appending starts on a fresh line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class JsonlAppender:
    """Append records to a JSONL file; :meth:`commit` makes them durable (flush + fsync).

    Opening drops a torn last line first. With ``enabled=False`` nothing is written (a process
    that only takes part in a distributed job).

    >>> with JsonlAppender("out.jsonl") as out:  # doctest: +SKIP
    ...     out.write({"query_id": "q1"})
    ...     out.commit()
    """

    def __init__(self, path: str | Path, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._handle = None

    def __enter__(self) -> JsonlAppender:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            drop_torn_tail(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
        return self

    def write(self, record: dict) -> None:
        if self._handle is not None:
            self._handle.write(_dumps(record) + "\n")

    def commit(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self.commit()
            self._handle.close()
            self._handle = None
