"""The query sets shipped with sami: ``sami/data/builtin/<set>.jsonl``, with each row's split
stored in the file (see ``docs/data.md``)."""

from __future__ import annotations

import os
from pathlib import Path

from sami.data.common import Query, split_matches
from sami.jsonl import read_jsonl

DATA_DIR = Path(__file__).parents[1] / "builtin"
TASKS = {"dialogue": "dialogue", "summarisation": "summarisation"}
"""Each built-in set, and the task its queries are for."""
ALIASES = {"summarization": "summarisation"}
SPECS = tuple(sorted(TASKS))


def _name(spec: str) -> str:
    return ALIASES.get(spec, spec)


def claims(spec: str) -> bool:
    return _name(spec) in TASKS


def task(spec: str) -> str:
    return TASKS[_name(spec)]


def load(
    spec: str,
    split: str,
    *,
    column: str | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Query]:
    """The rows of the set whose stored split matches ``split``; ``column`` and the paths are unused."""
    name = _name(spec)
    rows = read_jsonl(DATA_DIR / f"{name}.jsonl", torn_tail="error", what="built-in query set")
    source = f"builtin:{name}"
    return [Query(row["id"], row["text"].strip(), source) for row in rows if split_matches(row["split"], split)]
