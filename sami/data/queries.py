"""Queries: the prompts x that SAMI answers under each constitution.

One function, :func:`load_queries`, turns a short *spec* into a list of :class:`Query`::

    load_queries("dialogue")                      # built-in dialogue requests (train split)
    load_queries("summarisation", "eval")         # built-in posts to summarise, held-out split
    load_queries("hh-rlhf:helpful-base")          # Anthropic/hh-rlhf, first human turn of 'chosen'
    load_queries("hh-rlhf:harmless-base", "eval") # ... its 'test' split
    load_queries("tldr", limit=256, seed=0)       # openai/summarize_from_feedback comparisons, info.post
    load_queries("my_prompts.jsonl", column="question")   # any JSONL / JSON / CSV / TXT file

Splits are ``"train"``, ``"eval"`` (held out) and ``"all"``. For the hub datasets ``"eval"``
is their held-out split (hh-rlhf ``test``, summarize_from_feedback ``validation``); the hub
names are accepted as aliases. Built-in sets store the split of every row in the file (the
last 40 rows of each set are ``eval``). A user file is filtered by its ``split`` column when it
has one; without one, ``"train"``/``"all"`` return every row and :func:`split_queries` makes a
seeded held-out split.

The hub datasets are read with ``datasets.load_dataset`` (imported only when needed). Their
location can be overridden, e.g. to read a local copy on a machine without network access:
pass ``data_path=`` or set ``SAMI_HH_RLHF_PATH`` / ``SAMI_TLDR_PATH`` to a directory laid out
like the original (see ``docs/data.md``).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_SETS = {"dialogue": "dialogue.jsonl", "summarisation": "summarisation.jsonl"}
BUILTIN_ALIASES = {"summarization": "summarisation"}

HH_RLHF_HUB_ID = "Anthropic/hh-rlhf"
HH_RLHF_ENV = "SAMI_HH_RLHF_PATH"
# the subsets of Anthropic/hh-rlhf whose rows are {"chosen", "rejected"} conversations
HH_RLHF_SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")

TLDR_HUB_ID = "openai/summarize_from_feedback"
# The hub repository only holds a loading script, which `datasets` >= 4 no longer runs; the
# Hub's own parquet export of the 'comparisons' config lives on this branch.
TLDR_HUB_REVISION = "refs/convert/parquet"
TLDR_ENV = "SAMI_TLDR_PATH"

SPLITS = ("train", "eval", "all")
DEFAULT_COLUMNS = ("query", "text", "prompt")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")


# ---------------------------------------------------------------------------------------------
# errors: each subclasses the builtin a caller would expect, and its message names the fix


class QueryError(Exception):
    """Base class of every error raised while loading queries."""


class UnknownQuerySpecError(QueryError, ValueError):
    """The spec is neither a built-in set, a known hub dataset nor a file path."""


class QueryFileNotFoundError(QueryError, FileNotFoundError):
    """A query file (or a local dataset directory) does not exist."""


class QueryColumnError(QueryError, ValueError):
    """The text column is missing, empty or holds something other than text."""


class EmptyQuerySetError(QueryError, ValueError):
    """Loading succeeded but produced no queries."""


class UnknownSplitError(QueryError, ValueError):
    """The split is not one of train / eval / all, or the source has no such split."""


class QuerySourceError(QueryError, RuntimeError):
    """`datasets` could not load a hub dataset (network, missing files, changed format)."""


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One prompt to be answered under each constitution.

    Args:
        id: stable identifier, unique within its set (``"dialogue-0001"``, ``"tldr-t3_abc"``).
        text: the request or the post to summarise, stripped of surrounding whitespace.
        source: where it came from: ``"builtin:dialogue"``, ``"hh-rlhf:helpful-base"``,
            ``"tldr"``, ``"file:<path>"``.
    """

    id: str
    text: str
    source: str


def builtin_query_sets() -> list[str]:
    """Names of the query sets shipped with sami (``dialogue``, ``summarisation``)."""
    return sorted(BUILTIN_SETS)


def query_specs() -> list[str]:
    """Every spec :func:`load_queries` accepts besides a file path."""
    return builtin_query_sets() + [f"hh-rlhf:{subset}" for subset in HH_RLHF_SUBSETS] + ["tldr"]


def load_queries(
    spec: str,
    split: str = "train",
    *,
    column: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Query]:
    """Load the queries named by ``spec``.

    Args:
        spec: ``"dialogue"`` or ``"summarisation"`` (built-in sets); ``"hh-rlhf:<subset>"``
            with subset ``helpful-base`` / ``harmless-base`` (also ``helpful-online``,
            ``helpful-rejection-sampled``); ``"tldr"``; or a path to a ``.jsonl``, ``.json``,
            ``.csv`` or ``.txt`` file (optionally prefixed ``file:``).
        split: ``"train"``, ``"eval"`` (held out) or ``"all"``. Hub split names (``test``,
            ``validation``) are accepted as aliases of ``"eval"``.
        column: the text column of a user file; default the first of ``query``, ``text``,
            ``prompt`` that the file has. Ignored for built-in and hub sets.
        limit: keep at most this many queries, a seeded random sample that keeps file order.
        seed: seed of that sample (only used with ``limit``).
        data_path: where to read a hub dataset from instead of the Hub: a local directory in
            the original layout, or another hub id. Overrides ``SAMI_HH_RLHF_PATH`` /
            ``SAMI_TLDR_PATH``.
        cache_dir: cache directory passed to ``datasets.load_dataset``.

    Returns:
        The queries, in source order, with unique ids.

    Raises:
        UnknownQuerySpecError: ``spec`` is not a known set, dataset or file type.
        QueryFileNotFoundError: a file or local dataset directory does not exist.
        QueryColumnError: a user file lacks the column, or it is empty everywhere.
        UnknownSplitError: ``split`` is not train / eval / all (or the file has no such rows).
        EmptyQuerySetError: nothing was left to return.
        QuerySourceError: ``datasets`` failed to load a hub dataset.
    """
    split = _normalise_split(split)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    spec = str(spec).strip()
    name = BUILTIN_ALIASES.get(spec, spec)

    if name in BUILTIN_SETS:
        queries = _load_builtin(name, split)
    elif name.startswith("hh-rlhf"):
        queries = _load_hh_rlhf(name, split, data_path, cache_dir)
    elif name in ("tldr", "summarize_from_feedback", TLDR_HUB_ID):
        queries = _load_tldr(split, data_path, cache_dir)
    elif name == HH_RLHF_HUB_ID:
        raise UnknownQuerySpecError(
            f"{spec!r}: name a subset, e.g. 'hh-rlhf:helpful-base' or 'hh-rlhf:harmless-base'"
        )
    else:
        queries = _load_file(name, split, column)

    if not queries:
        raise EmptyQuerySetError(
            f"{spec!r} (split {split!r}) gave no queries; check the source or choose another split"
        )
    if limit is not None and limit < len(queries):
        keep = sorted(random.Random(seed).sample(range(len(queries)), limit))
        queries = [queries[i] for i in keep]
    return queries


def split_queries(
    queries: Sequence[Query], eval_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Query], list[Query]]:
    """Split queries into (train, eval) at random, reproducibly; each part keeps the input order.

    Args:
        queries: the queries to split, e.g. ``load_queries("my.jsonl")``.
        eval_fraction: share held out for evaluation, strictly between 0 and 1; rounded, but
            each part gets at least one query.
        seed: seed of the shuffle; the same seed and input give the same split.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be strictly between 0 and 1, got {eval_fraction!r}")
    n = len(queries)
    if n < 2:
        raise ValueError(f"need at least 2 queries to split into train and eval, got {n}")
    n_eval = min(max(round(n * eval_fraction), 1), n - 1)
    eval_indices = set(random.Random(seed).sample(range(n), n_eval))
    train = [q for i, q in enumerate(queries) if i not in eval_indices]
    held_out = [q for i, q in enumerate(queries) if i in eval_indices]
    return train, held_out


# ---------------------------------------------------------------------------------------------
# helpers


def _normalise_split(split: str) -> str:
    aliases = {"test": "eval", "validation": "eval", "valid": "eval", "val": "eval"}
    value = aliases.get(str(split).strip().lower(), str(split).strip().lower())
    if value not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return value


def _split_matches(row_split: str, split: str) -> bool:
    return split == "all" or _normalise_split(row_split) == split


def _clean(text: Any) -> str:
    return text.strip() if isinstance(text, str) else ""


def _import_datasets():
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets is a dependency
        raise QuerySourceError("loading hub datasets needs the 'datasets' package: pip install datasets") from error
    return datasets


def _is_local(location: str) -> bool:
    return location.startswith((".", "/", "~")) or os.path.isabs(location) or os.path.exists(location)


def _resolve_location(data_path, env_var: str, hub_id: str) -> tuple[str, bool]:
    """(location, is_local) of a hub dataset, after ``data_path`` and the environment."""
    location = str(data_path) if data_path is not None else os.environ.get(env_var) or hub_id
    if _is_local(location):
        path = Path(location).expanduser()
        if not path.is_dir():
            raise QueryFileNotFoundError(
                f"dataset directory {str(path)!r} not found (from {'data_path' if data_path else env_var}); "
                f"point it at a local copy of {hub_id} or unset it to read from the Hub"
            )
        return str(path), True
    return location, False


def _natural_key(name: str) -> list:
    """Sort key that puts batch3 before batch10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _load_error(name: str, location: str, env_var: str, layout: str, error: Exception) -> QuerySourceError:
    return QuerySourceError(
        f"could not load {name} from {location!r}: {type(error).__name__}: {error}. "
        f"Without network access, download the files and set {env_var}=/path/to/dir (or pass data_path=) "
        f"with the layout {layout}"
    )


# ---------------------------------------------------------------------------------------------
# built-in sets


def _load_builtin(name: str, split: str) -> list[Query]:
    path = BUILTIN_DIR / BUILTIN_SETS[name]
    queries = []
    for row in _read_jsonl(path):
        if _split_matches(row["split"], split):
            queries.append(Query(id=row["id"], text=row["text"].strip(), source=f"builtin:{name}"))
    return queries


# ---------------------------------------------------------------------------------------------
# Anthropic/hh-rlhf

_FIRST_HUMAN_TURN = re.compile(r"^\s*Human:(.*?)(?:\n\nAssistant:|\Z)", re.DOTALL)


def first_human_turn(conversation: str) -> str:
    """The first ``Human:`` turn of an hh-rlhf conversation, stripped; ``""`` if there is none.

    >>> first_human_turn("\\n\\nHuman: Hi there\\n\\nAssistant: Hello!")
    'Hi there'
    """
    match = _FIRST_HUMAN_TURN.match(conversation or "")
    return match.group(1).strip() if match else ""


def _load_hh_rlhf(name: str, split: str, data_path, cache_dir) -> list[Query]:
    subset = name.partition(":")[2]
    if subset not in HH_RLHF_SUBSETS:
        raise UnknownQuerySpecError(
            f"unknown hh-rlhf subset {subset!r} in {name!r}; use one of "
            + ", ".join(f"'hh-rlhf:{s}'" for s in HH_RLHF_SUBSETS)
        )
    location, _ = _resolve_location(data_path, HH_RLHF_ENV, HH_RLHF_HUB_ID)
    datasets = _import_datasets()
    source = f"hh-rlhf:{subset}"
    hub_splits = {"train": ["train"], "eval": ["test"], "all": ["train", "test"]}[split]

    queries: list[Query] = []
    seen: set[str] = set()
    for hub_split in hub_splits:
        try:
            rows = datasets.load_dataset(location, data_dir=subset, split=hub_split, cache_dir=cache_dir)
        except Exception as error:
            raise _load_error(
                HH_RLHF_HUB_ID, location, HH_RLHF_ENV, f"<dir>/{subset}/{{train,test}}.jsonl.gz", error
            ) from error
        if "chosen" not in rows.column_names:
            raise QueryColumnError(
                f"{location}/{subset} ({hub_split}) has no 'chosen' column (columns: {rows.column_names}); "
                "is this a copy of Anthropic/hh-rlhf?"
            )
        empty = duplicates = 0
        before = len(queries)
        for index, conversation in enumerate(rows["chosen"]):
            text = first_human_turn(conversation)
            if not text:
                empty += 1
            elif text in seen:
                duplicates += 1
            else:
                seen.add(text)
                queries.append(Query(id=f"hh-rlhf-{subset}-{hub_split}-{index:06d}", text=text, source=source))
        logger.info(
            "%s %s: %d conversations -> %d queries (%d without a human turn, %d repeated first turns dropped)",
            source, hub_split, len(rows), len(queries) - before, empty, duplicates,
        )
    return queries


# ---------------------------------------------------------------------------------------------
# openai/summarize_from_feedback ("TL;DR")

# valid1 / valid2 are the dataset's two validation batches; both are held out
_TLDR_ROW_SPLITS = {"train": ("train",), "eval": ("valid1", "valid2"), "all": ("train", "valid1", "valid2")}


def _tldr_raw_features(datasets):
    """Features for the raw comparison files; nested fields vary by batch, so keep them as JSON."""
    value = datasets.Value
    if hasattr(datasets, "Json"):
        info, summaries, extra = datasets.Json(), datasets.Json(), datasets.Json()
    else:  # older datasets: the schema the original loading script declared
        info = {key: value("string") for key in ("id", "post", "title", "subreddit", "site", "article")}
        summaries = [{key: value("string") for key in ("text", "policy", "note")}]
        extra = {"confidence": value("int32")}
    return datasets.Features(
        {
            "info": info,
            "summaries": summaries,
            "choice": value("int32"),
            "worker": value("string"),
            "batch": value("string"),
            "split": value("string"),
            "extra": extra,
        }
    )


def _load_tldr_rows(split: str, data_path, cache_dir) -> tuple[list[tuple[Any, str]], str]:
    """(list of (info, row split)) of the comparisons in ``split``, and where they came from.

    Three layouts are read:
      * the Hub's parquet export (default): ``comparisons/{train,validation}/*.parquet`` on
        branch ``refs/convert/parquet`` of ``openai/summarize_from_feedback``;
      * a local directory (or another hub repository, main branch) holding that same export;
      * a local directory holding the original JSON-lines files, ``comparisons/batch*.json``
        (and ``cnndm*.json``, whose rows have no post and are skipped), split by each row's
        ``split`` field.
    """
    datasets = _import_datasets()
    location, local = _resolve_location(data_path, TLDR_ENV, TLDR_HUB_ID)
    layout = "<dir>/comparisons/batch*.json or <dir>/comparisons/{train,validation}/*.parquet"
    raw_files = sorted(map(str, Path(location, "comparisons").glob("*.json*")), key=_natural_key) if local else []
    try:
        if raw_files:
            rows = datasets.load_dataset(
                "json",
                data_files={"comparisons": raw_files},
                features=_tldr_raw_features(datasets),
                split="comparisons",
                cache_dir=cache_dir,
            )
            wanted = _TLDR_ROW_SPLITS[split]
            return [(info, s) for info, s in zip(rows["info"], rows["split"]) if s in wanted], location
        if local and not list(Path(location, "comparisons").glob("*/*.parquet")):
            raise QueryFileNotFoundError(f"no comparison files in {location!r}; expected {layout}")
        hub_splits = {"train": ["train"], "eval": ["validation"], "all": ["train", "validation"]}[split]
        out = []
        for hub_split in hub_splits:
            rows = datasets.load_dataset(
                location,
                data_files={hub_split: f"comparisons/{hub_split}/*.parquet"},
                split=hub_split,
                revision=TLDR_HUB_REVISION if location == TLDR_HUB_ID else None,
                cache_dir=cache_dir,
            )
            row_splits = rows["split"] if "split" in rows.column_names else [hub_split] * len(rows)
            out.extend(zip(rows["info"], row_splits))
        return out, location
    except QueryError:
        raise
    except Exception as error:
        raise _load_error(TLDR_HUB_ID, location, TLDR_ENV, layout, error) from error


def _load_tldr(split: str, data_path, cache_dir) -> list[Query]:
    rows, location = _load_tldr_rows(split, data_path, cache_dir)
    queries: list[Query] = []
    seen: set[str] = set()
    empty = duplicates = 0
    for info, _ in rows:
        if isinstance(info, str):  # a JSON-encoded struct
            info = json.loads(info)
        info = info or {}
        post = _clean(info.get("post"))
        if not post:  # CNN/DM rows carry an article instead; some posts are blank
            empty += 1
            continue
        key = info.get("id") or "post-" + hashlib.sha1(post.encode("utf-8")).hexdigest()[:16]
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        queries.append(Query(id=f"tldr-{key}", text=post, source="tldr"))
    logger.info(
        "tldr %s from %s: %d comparisons -> %d posts (%d without a post, %d repeats of a post id)",
        split, location, len(rows), len(queries), empty, duplicates,
    )
    return queries


# ---------------------------------------------------------------------------------------------
# user files


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                message = f"{path}:{number}: not valid JSON ({error.msg}); fix or remove the line"
                raise QueryColumnError(message) from error
    return rows


def _read_records(path: Path) -> list[Any]:
    """Rows of a query file: dicts (JSONL / JSON / CSV) or plain strings (TXT, JSON list of strings)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return _read_jsonl(path)  # JSON lines saved as .json (as summarize_from_feedback does)
        if isinstance(data, dict):
            lists = [key for key, value in data.items() if isinstance(value, list)]
            if len(lists) != 1:
                raise QueryColumnError(
                    f"{path}: expected a JSON list of records (or an object holding exactly one list), "
                    f"found an object with keys {sorted(data)}"
                )
            data = data[lists[0]]
        if not isinstance(data, list):
            raise QueryColumnError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
        return data
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if suffix == ".txt":  # one query per non-empty line
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise UnknownQuerySpecError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def _columns(records: Iterable[Any]) -> list[str]:
    columns: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
    return list(columns)


def _load_file(spec: str, split: str, column: str | None) -> list[Query]:
    raw = spec[len("file:") :] if spec.startswith("file:") else spec
    path = Path(raw).expanduser()
    if not path.exists():
        looks_like_path = (
            spec.startswith("file:") or path.suffix.lower() in FILE_SUFFIXES or os.sep in raw or "/" in raw
        )
        if looks_like_path:
            raise QueryFileNotFoundError(f"query file {raw!r} not found; check the path (relative to {os.getcwd()})")
        close = difflib.get_close_matches(spec, query_specs(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownQuerySpecError(
            f"unknown query spec {spec!r}{hint} Use one of {', '.join(query_specs())}, "
            f"or a path to a {'/'.join(FILE_SUFFIXES)} file"
        )
    if path.is_dir():
        raise UnknownQuerySpecError(f"{raw!r} is a directory; give a {'/'.join(FILE_SUFFIXES)} file")
    records = _read_records(path)
    source = f"file:{raw}"
    if not records:
        raise EmptyQuerySetError(f"{raw}: the file has no rows; add queries, one per row")

    if all(isinstance(r, str) for r in records):  # TXT, or a JSON list of strings
        if split == "eval":
            raise UnknownSplitError(_no_split_message(raw))
        return [
            Query(id=f"{path.stem}-{i:05d}", text=r.strip(), source=source)
            for i, r in enumerate(records, start=1)
            if r.strip()
        ]
    if not all(isinstance(r, dict) for r in records):
        raise QueryColumnError(f"{raw}: mix of records and bare values; make every row an object with a text column")

    available = _columns(records)
    if column is None:
        column = next((c for c in DEFAULT_COLUMNS if c in available), None)
        if column is None:
            raise QueryColumnError(
                f"{raw}: no 'query', 'text' or 'prompt' column; pass column=... (--column) naming one of {available}"
            )
    elif column not in available:
        raise QueryColumnError(f"{raw}: no column {column!r}; available columns: {available}")

    if "split" not in available and split == "eval":
        raise UnknownSplitError(_no_split_message(raw))

    queries, ids, skipped, in_split = [], set(), 0, 0
    use_id_column = "id" in available
    for number, record in enumerate(records, start=1):  # numbered before filtering, so ids do not depend on split
        if "split" in available:
            try:
                matches = _split_matches(str(record.get("split") or "train"), split)
            except UnknownSplitError:
                raise UnknownSplitError(
                    f"{raw}: row {number}: split {record.get('split')!r} is not train or eval; fix the 'split' column"
                ) from None
            if not matches:
                continue
        in_split += 1
        value = record.get(column)
        if value is not None and not isinstance(value, (str, int, float)):
            raise QueryColumnError(f"{raw}: row {number}: column {column!r} holds a {type(value).__name__}, not text")
        text = str(value).strip() if value is not None else ""
        if not text:
            skipped += 1
            continue
        has_id = use_id_column and record.get("id") not in (None, "")
        query_id = str(record["id"]) if has_id else f"{path.stem}-{number:05d}"
        if query_id in ids:
            raise QueryColumnError(f"{raw}: row {number}: duplicate id {query_id!r}; ids must be unique")
        ids.add(query_id)
        queries.append(Query(id=query_id, text=text, source=source))
    if not in_split:
        raise UnknownSplitError(f"{raw}: no rows with split {split!r}; its 'split' column should say train or eval")
    if not queries:
        raise QueryColumnError(f"{raw}: column {column!r} is empty in every row; pick another of {available}")
    if skipped:
        logger.warning("%s: skipped %d rows with an empty %r", raw, skipped, column)
    return queries


def _no_split_message(raw: str) -> str:
    return (
        f"{raw}: the file has no 'split' column, so it has no eval rows; add a 'split' column "
        "(train/eval), pass a separate eval file, or use split_queries(load_queries(..., 'all'))"
    )
