"""openai/summarize_from_feedback ("TL;DR"): ``info.post`` of the ``comparisons`` config, one
query per post id (see ``docs/data.md``).

The hub repository holds only a loading script, which ``datasets`` >= 4 no longer runs, so
the comparisons are read from one of two layouts:

* the Hub's parquet export, ``comparisons/{train,validation}/*.parquet`` (branch
  ``refs/convert/parquet`` of the hub repository; the main branch of a mirror or a local copy);
* a local copy of OpenAI's original JSON-lines batches, ``comparisons/batch*.json`` (and
  ``cnndm*.json``, whose rows have no post), split by each row's ``split`` field.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from sami.data.common import (
    Query,
    QueryError,
    QueryFileNotFoundError,
    load_error,
    require_hub_dataset,
    resolve_location,
)

logger = logging.getLogger(__name__)

HUB_ID = "openai/summarize_from_feedback"
HUB_REVISION = "refs/convert/parquet"
ENV_VAR = "SAMI_TLDR_PATH"
SPECS = ("tldr",)
TASK = "summarisation"
LAYOUT = "<dir>/comparisons/batch*.json or <dir>/comparisons/{train,validation}/*.parquet"
_HUB_SPLITS = {"train": ["train"], "eval": ["validation"], "all": ["train", "validation"]}
# valid1 / valid2 are the dataset's two validation batches; both are held out
_ROW_SPLITS = {"train": ("train",), "eval": ("valid1", "valid2"), "all": ("train", "valid1", "valid2")}


def claims(spec: str) -> bool:
    return spec in ("tldr", "summarize_from_feedback", HUB_ID)


def task(spec: str) -> str:
    return TASK


def load(
    spec: str,
    split: str,
    *,
    column: str | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Query]:
    """The posts of the comparisons in ``split`` (``eval`` is ``validation``), deduplicated by
    ``info.id`` (first occurrence wins); comparisons without a post are skipped."""
    location, local = resolve_location(data_path, ENV_VAR, HUB_ID)
    if not local:
        require_hub_dataset(location, ENV_VAR, LAYOUT)
    try:
        infos = _comparison_infos(location, local, split, cache_dir)
    except QueryError:
        raise
    except Exception as error:
        raise load_error(HUB_ID, location, ENV_VAR, LAYOUT, error) from error

    queries: list[Query] = []
    seen: set[str] = set()
    empty = duplicates = 0
    for info in infos:
        post = (info or {}).get("post")
        post = post.strip() if isinstance(post, str) else ""
        if not post:  # CNN/DM rows carry an article instead; some posts are blank
            empty += 1
            continue
        key = info.get("id") or "post-" + hashlib.sha1(post.encode("utf-8")).hexdigest()[:16]
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        queries.append(Query(f"tldr-{key}", post, "tldr"))
    logger.info(
        "tldr %s from %s: %d comparisons -> %d posts (%d without a post, %d repeats of a post id)",
        split, location, len(infos), len(queries), empty, duplicates,
    )
    return queries


def _comparison_infos(location: str, local: bool, split: str, cache_dir) -> list[dict | None]:
    """The ``info`` field of every comparison in ``split``, in file order."""
    import datasets

    comparisons = Path(location, "comparisons")
    raw_files = sorted(map(str, comparisons.glob("*.json*")), key=_natural_key) if local else []
    if raw_files:
        rows = datasets.load_dataset(
            "json",
            data_files={"comparisons": raw_files},
            features=_raw_features(datasets),
            split="comparisons",
            cache_dir=cache_dir,
        )
        return [info for info, row_split in zip(rows["info"], rows["split"]) if row_split in _ROW_SPLITS[split]]
    if local and not list(comparisons.glob("*/*.parquet")):
        raise QueryFileNotFoundError(f"no comparison files in {location!r}; expected {LAYOUT}")
    infos = []
    for hub_split in _HUB_SPLITS[split]:
        rows = datasets.load_dataset(
            location,
            data_files={hub_split: f"comparisons/{hub_split}/*.parquet"},
            split=hub_split,
            revision=HUB_REVISION if location == HUB_ID else None,
            cache_dir=cache_dir,
        )
        infos.extend(rows["info"])
    return infos


def _raw_features(datasets):
    """Features of the original batches; their nested fields differ by batch, so keep them as JSON."""
    value = datasets.Value
    return datasets.Features(
        {
            "info": datasets.Json(),
            "summaries": datasets.Json(),
            "choice": value("int32"),
            "worker": value("string"),
            "batch": value("string"),
            "split": value("string"),
            "extra": datasets.Json(),
        }
    )


def _natural_key(name: str) -> list:
    """Sort key that puts batch3 before batch10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
