"""Where records come from: a JSONL file, a ``datasets`` dataset, a folder saved with ``save_to_disk``, a data
folder (parquet/JSONL/CSV files) or a hub dataset id.

:func:`read_rows` and :func:`rows_of` turn any of them into the plain dicts that :mod:`sami.records` validates,
so records are checked (and dropped ones skipped) the same way whatever they were stored in. A source string
may name a config after a colon: ``my-org/sami-run:iter_1`` (the configs ``sami`` pushes, one per iteration,
docs/training.md). A dataset with several splits gives the first of ``splits`` it has; one with a single split
gives that one. JSONL goes through :mod:`sami.jsonl`; ``datasets`` is imported only for the other sources.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sami.errors import MissingFileError, SamiError
from sami.jsonl import read_jsonl

TRAIN_SPLITS = ("train",)
"""The split training reads from a dataset with several."""
EVAL_SPLITS = ("eval", "test", "validation")
"""The splits held-out records are read from, in this order (``sami`` pushes ``eval``; TRL's datasets ``test``)."""
SAVED_MARKERS = ("dataset_dict.json", "state.json")
"""Files ``save_to_disk`` writes into a folder (a ``DatasetDict``, a ``Dataset``)."""
DATA_FILE_TYPES = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
"""Single files read with ``datasets``' builders; every other file is read as JSONL."""


class DatasetSourceError(SamiError, ValueError):
    """A dataset source cannot be read as records: an unreachable hub id, an ambiguous split, a bad folder."""


def is_datasets_object(data: Any) -> bool:
    """Whether ``data`` is a ``datasets`` (Iterable)Dataset or (Iterable)DatasetDict (without importing datasets)."""
    datasets = sys.modules.get("datasets")
    if datasets is None:
        return False
    kinds = (datasets.Dataset, datasets.DatasetDict, datasets.IterableDataset, datasets.IterableDatasetDict)
    return isinstance(data, kinds)


def _split_of(splits_found: Sequence[str], splits: Sequence[str] | None, where: str) -> str:
    found = list(splits_found)
    if len(found) == 1:
        return found[0]
    for split in splits or ():
        if split in found:
            return split
    wanted = f"none of {list(splits)} is among them" if splits else "say which one"
    raise DatasetSourceError(
        f"{where} has the splits {found} and {wanted}: pick one (in Python `dataset[{found[0]!r}]`, or the "
        "`splits` argument)"
    )


def _decoded(row: dict) -> dict:
    """A row as sami wrote the record: the free-form fields that a pushed dataset stores as JSON text decoded."""
    from sami.hub import FREE_FORM

    return {k: json.loads(v) if k in FREE_FORM and isinstance(v, str) else v for k, v in row.items()}


def rows_of(data: Any, splits: Sequence[str] | None = None, where: str = "the dataset") -> list[dict]:
    """The rows of a ``datasets`` object as dicts; a ``DatasetDict`` gives its only split or the first of ``splits``."""
    if isinstance(data, dict):  # a (Iterable)DatasetDict
        data = data[_split_of(data.keys(), splits, where)]
    return [_decoded(dict(row)) for row in data]


def _source_and_config(source: str) -> tuple[str, str | None]:
    """``"owner/name:config"`` -> ``("owner/name", "config")``; an existing path keeps its colons."""
    if Path(source).expanduser().exists() or ":" not in source:
        return source, None
    name, _, config = source.rpartition(":")
    return name, config or None


def read_rows(source: str | Path, *, splits: Sequence[str] | None = None, what: str = "records file") -> list[dict]:
    """The records of ``source`` as plain dicts, in stored order.

    Args:
        source: a JSONL file (read by :func:`sami.jsonl.read_jsonl`), a ``.parquet``/``.csv``/``.arrow`` file,
            a folder written by ``save_to_disk``, a folder of data files, or a hub dataset id
            (``owner/name``, optionally ``:config``; loaded by ``datasets.load_dataset``).
        splits: the split to take from a dataset with several: the first of these it has.
        what: how error messages name the source (``"generations file"``).
    """
    from sami.models.options import is_hub_id

    text, config = _source_and_config(str(source))
    path = Path(text).expanduser()
    if path.is_file() and path.suffix not in DATA_FILE_TYPES:
        return read_jsonl(path, what=what)
    where = f"{what} {str(source)!r}"
    if path.is_dir() and any((path / marker).exists() for marker in SAVED_MARKERS):
        from datasets import load_from_disk

        return rows_of(load_from_disk(str(path)), splits, where)
    if path.is_file() or path.is_dir():
        from datasets import load_dataset

        if path.is_file():
            dataset = load_dataset(DATA_FILE_TYPES[path.suffix], data_files=str(path))
        else:
            dataset = load_dataset(str(path), name=config)
        return rows_of(dataset, splits, where)
    if not is_hub_id(text):
        raise MissingFileError(
            f"{where} not found: give a JSONL file, a folder (written by save_to_disk, or of parquet/JSONL files) or "
            "a hub dataset id (owner/name, optionally :config)"
        )
    from datasets import load_dataset

    try:
        dataset = load_dataset(text, name=config)
    except (OSError, ValueError) as error:  # not found, offline, a config to choose
        raise DatasetSourceError(
            f"cannot load the hub dataset {text!r}{f' (config {config!r})' if config else ''}: {error}. Check the id "
            "(owner/name:config), your connection and, for a private dataset, HF_TOKEN; or download it and give "
            "its folder"
        ) from None
    return rows_of(dataset, splits, where)
