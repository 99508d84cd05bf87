"""Anthropic/hh-rlhf: the first human turn of each ``chosen`` conversation, one query per
distinct turn (see ``docs/data.md``)."""

from __future__ import annotations

import logging
import os
import re

from sami.data.common import Query, QueryValueError, load_error, require_hub_dataset, resolve_location

logger = logging.getLogger(__name__)

HUB_ID = "Anthropic/hh-rlhf"
ENV_VAR = "SAMI_HH_RLHF_PATH"
SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")
"""The subsets whose rows are ``{"chosen", "rejected"}`` conversations."""
SPECS = tuple(f"hh-rlhf:{subset}" for subset in SUBSETS)
TASK = "dialogue"
LAYOUT = "<dir>/<subset>/{train,test}.jsonl.gz"
_HUB_SPLITS = {"train": ["train"], "eval": ["test"], "all": ["train", "test"]}
_FIRST_HUMAN_TURN = re.compile(r"^\s*Human:(.*?)(?:\n\nAssistant:|\Z)", re.DOTALL)


def claims(spec: str) -> bool:
    return spec in ("hh-rlhf", HUB_ID) or spec.startswith("hh-rlhf:")


def task(spec: str) -> str:
    return TASK


def first_human_turn(conversation: str) -> str:
    """The first ``Human:`` turn of an hh-rlhf conversation, stripped; ``""`` if there is none.

    >>> first_human_turn("\\n\\nHuman: Hi there\\n\\nAssistant: Hello!")
    'Hi there'
    """
    match = _FIRST_HUMAN_TURN.match(conversation or "")
    return match.group(1).strip() if match else ""


def _subset(spec: str) -> str:
    if spec == HUB_ID:
        raise QueryValueError(f"{spec!r}: name a subset, e.g. 'hh-rlhf:helpful-base' or 'hh-rlhf:harmless-base'")
    subset = spec.partition(":")[2]
    if subset not in SUBSETS:
        raise QueryValueError(
            f"unknown hh-rlhf subset {subset!r} in {spec!r}; use one of " + ", ".join(f"'{s}'" for s in SPECS)
        )
    return subset


def load(
    spec: str,
    split: str,
    *,
    column: str | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Query]:
    """First human turns of the subset's hub split(s) (``eval`` is ``test``), repeats dropped.

    IDs are ``hh-rlhf-<subset>-<hub split>-<row index>``, stable however many rows are dropped.
    """
    subset = _subset(spec)
    location, local = resolve_location(data_path, ENV_VAR, HUB_ID)
    if not local:
        require_hub_dataset(location, ENV_VAR, LAYOUT)
    import datasets

    source = f"hh-rlhf:{subset}"
    queries: list[Query] = []
    seen: set[str] = set()
    for hub_split in _HUB_SPLITS[split]:
        try:
            rows = datasets.load_dataset(location, data_dir=subset, split=hub_split, cache_dir=cache_dir)
        except Exception as error:
            raise load_error(HUB_ID, location, ENV_VAR, LAYOUT.replace("<subset>", subset), error) from error
        if "chosen" not in rows.column_names:
            raise QueryValueError(
                f"{location}/{subset} ({hub_split}) has no 'chosen' column (columns: {rows.column_names}); "
                f"is this a copy of {HUB_ID}?"
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
                queries.append(Query(f"hh-rlhf-{subset}-{hub_split}-{index:06d}", text, source))
        logger.info(
            "%s %s: %d conversations -> %d queries (%d without a human turn, %d repeated first turns dropped)",
            source, hub_split, len(rows), len(queries) - before, empty, duplicates,
        )
    return queries
