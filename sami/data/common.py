"""What every query source shares: the :class:`Query` record, the errors, split names, and the
location of a hub dataset (the Hub, another hub repository, or a local copy)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sami.errors import SamiError

SPLITS = ("train", "eval", "all")
_SPLIT_ALIASES = {"test": "eval", "validation": "eval", "valid": "eval", "val": "eval"}


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


class QueryError(SamiError):
    """Base class of every error raised while loading queries; the message names the fix."""


class QueryValueError(QueryError, ValueError):
    """The spec, split, column or rows cannot give queries: unknown spec or file type, split not
    train / eval / all (or absent from the source), a missing, empty or non-text column,
    duplicate ids, a malformed line, or nothing left to return."""


class QueryFileNotFoundError(QueryError, FileNotFoundError):
    """A query file, a local dataset directory or its comparison files do not exist."""


class QuerySourceError(QueryError, RuntimeError):
    """`datasets` could not load a hub dataset (network, missing files, changed format)."""


def normalise_split(split: str) -> str:
    """``"train"``, ``"eval"`` or ``"all"``; the hub names (``test``, ``validation``, ...) mean eval."""
    value = str(split).strip().lower()
    value = _SPLIT_ALIASES.get(value, value)
    if value not in SPLITS:
        raise QueryValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return value


def split_matches(row_split: str, split: str) -> bool:
    """Whether a row whose split is ``row_split`` belongs to the (normalised) ``split``."""
    return split == "all" or normalise_split(row_split) == split


def resolve_location(data_path: str | os.PathLike | None, env_var: str, hub_id: str) -> tuple[str, bool]:
    """(location, is_local) of a hub dataset: ``data_path``, else ``$env_var``, else ``hub_id``."""
    location = str(data_path) if data_path is not None else os.environ.get(env_var) or hub_id
    is_local = location.startswith((".", "/", "~")) or os.path.isabs(location) or os.path.exists(location)
    if not is_local:
        return location, False
    path = Path(location).expanduser()
    if not path.is_dir():
        raise QueryFileNotFoundError(
            f"dataset directory {str(path)!r} not found (from {'data_path' if data_path else env_var}); "
            f"point it at a local copy of {hub_id} or unset it to read from the Hub"
        )
    return str(path), True


def load_error(hub_id: str, location: str, env_var: str, layout: str, error: Exception) -> QuerySourceError:
    """The error for a failed ``datasets.load_dataset``: what failed, and how to read a local copy."""
    return QuerySourceError(
        f"could not load {hub_id} from {location!r}: {type(error).__name__}: {error}. "
        f"Without network access, download the files and set {env_var}=/path/to/dir (or pass data_path=) "
        f"with the layout {layout}"
    )


def require_hub_dataset(location: str, env_var: str, layout: str) -> None:
    """Fail at once, naming the offline fix, when the hub dataset ``location`` cannot be reached
    (``datasets`` would retry for half a minute first)."""
    from sami.hub_access import HubUnreachableError, require_hub

    try:
        require_hub(
            location, repo_type="dataset",
            local=f"download its files and pass --query_data_path /path/to/dir (or set {env_var}) with the layout "
            f"{layout}",
        )
    except HubUnreachableError as error:
        raise QuerySourceError(str(error)) from None
