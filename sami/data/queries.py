"""Queries: the prompts x that SAMI answers under each constitution.

One function, :func:`load_queries`, turns a short *spec* into a list of :class:`Query`::

    load_queries("dialogue")                      # built-in dialogue requests (train split)
    load_queries("summarisation", "eval")         # built-in posts to summarise, held-out split
    load_queries("hh-rlhf:helpful-base")          # Anthropic/hh-rlhf, first human turn of 'chosen'
    load_queries("tldr", limit=256, seed=0)       # openai/summarize_from_feedback comparisons, info.post
    load_queries("my_prompts.jsonl", column="question")   # any JSONL / JSON / CSV / TXT file

Each source is one module of :mod:`sami.data.sources`; this module picks the source a spec
names, checks the split and the limit, and samples. Formats, splits and the offline layouts of
the hub datasets are described in ``docs/data.md``.
"""

from __future__ import annotations

import difflib
import os
import random
from collections.abc import Sequence

from sami.data.common import Query, QueryValueError, normalise_split
from sami.data.sources import builtin, files, hh_rlhf, tldr

SOURCES = (builtin, hh_rlhf, tldr, files)
"""In the order a spec is matched: a built-in name wins over a file of the same name."""


def builtin_query_sets() -> list[str]:
    """Names of the query sets shipped with sami (``dialogue``, ``summarisation``)."""
    return list(builtin.SPECS)


def query_specs() -> list[str]:
    """Every spec :func:`load_queries` accepts besides a file path."""
    return [spec for source in SOURCES for spec in source.SPECS]


def task_of(spec: str) -> str | None:
    """The task the queries of ``spec`` are for: ``"dialogue"``, ``"summarisation"``, or
    ``None`` for a user file (which may hold either).

    Raises:
        QueryValueError: ``spec`` is neither a known query set nor a file path.
    """
    spec = str(spec).strip()
    return _source_of(spec).task(spec)


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
        limit: keep at most this many queries, a seeded random sample that keeps source order.
        seed: seed of that sample (only used with ``limit``).
        data_path: where to read a hub dataset from instead of the Hub: a local directory in
            the original layout, or another hub id. Overrides ``SAMI_HH_RLHF_PATH`` /
            ``SAMI_TLDR_PATH``.
        cache_dir: cache directory passed to ``datasets.load_dataset``.

    Returns:
        The queries, in source order, with unique ids.

    Raises:
        QueryValueError: unknown spec, subset, file type or split; a file's column is missing,
            empty or not text; duplicate ids; a malformed line; nothing left to return.
        QueryFileNotFoundError: a file or local dataset directory does not exist.
        QuerySourceError: ``datasets`` failed to load a hub dataset.
    """
    split = normalise_split(split)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise QueryValueError(f"limit must be a positive integer or None, got {limit!r}")
    spec = str(spec).strip()
    queries = _source_of(spec).load(spec, split, column=column, data_path=data_path, cache_dir=cache_dir)
    if not queries:
        raise QueryValueError(f"{spec!r} (split {split!r}) gave no queries; check the source or choose another split")
    if limit is not None and limit < len(queries):
        keep = sorted(random.Random(seed).sample(range(len(queries)), limit))
        queries = [queries[i] for i in keep]
    return queries


def split_queries(
    queries: Sequence[Query], eval_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Query], list[Query]]:
    """Split queries into (train, eval) at random, reproducibly; each part keeps the input order.

    Args:
        queries: the queries to split, e.g. ``load_queries("my.jsonl", "all")``.
        eval_fraction: share held out for evaluation, strictly between 0 and 1; rounded, but
            each part gets at least one query.
        seed: seed of the shuffle; the same seed and input give the same split.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise QueryValueError(f"eval_fraction must be strictly between 0 and 1, got {eval_fraction!r}")
    n = len(queries)
    if n < 2:
        raise QueryValueError(f"need at least 2 queries to split into train and eval, got {n}")
    n_eval = min(max(round(n * eval_fraction), 1), n - 1)
    eval_indices = set(random.Random(seed).sample(range(n), n_eval))
    train = [q for i, q in enumerate(queries) if i not in eval_indices]
    held_out = [q for i, q in enumerate(queries) if i in eval_indices]
    return train, held_out


def _source_of(spec: str):
    """The source module that ``spec`` names; an unknown name gets the closest known spec."""
    source = next((source for source in SOURCES if source.claims(spec)), None)
    if source is None:
        close = difflib.get_close_matches(spec, query_specs(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise QueryValueError(
            f"unknown query spec {spec!r}{hint} Use one of {', '.join(query_specs())}, "
            f"or a path to a {'/'.join(files.SUFFIXES)} file"
        )
    return source
