"""Can the Hugging Face Hub be reached? Asked once, in a few seconds, before a hub id is loaded.

Without network, ``from_pretrained`` and ``datasets.load_dataset`` retry for 25 to 90 seconds
before failing with a connection traceback. :func:`require_hub` asks the Hub once (a HEAD request
through ``huggingface_hub``'s session, so its proxy and certificate settings apply, with a
:data:`PROBE_TIMEOUT` limit) and raises :class:`HubUnreachableError` at once, saying how to work
offline: a local folder, or ``HF_HUB_OFFLINE=1`` for what the cache holds. With
``HF_HUB_OFFLINE=1`` nothing is asked; a model that is not in the cache is an error there too.
"""

from __future__ import annotations

import functools
from typing import Literal

from sami.errors import SamiError

PROBE_TIMEOUT = 5.0
"""Seconds the probe waits for the Hub to answer."""


class HubUnreachableError(SamiError, ConnectionError):
    """A hub id was asked for, and the Hugging Face Hub cannot be reached (or offline mode is on)."""


def hub_unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the Hub (``HF_ENDPOINT``, by default https://huggingface.co) cannot be reached, or ``None`` when it
    answers (any HTTP status counts as an answer). Each endpoint is asked once per process."""
    from huggingface_hub import constants

    return _probe(constants.ENDPOINT, timeout)


@functools.cache
def _probe(endpoint: str, timeout: float) -> str | None:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=timeout)
    except Exception as error:  # noqa: BLE001 (the session's transport errors: DNS, refused, timeout, TLS, proxy)
        return f"{type(error).__name__}: {error}"
    return None


def require_hub(
    repo_id: str, *, repo_type: Literal["model", "dataset"] = "model", local: str, revision: str | None = None
) -> None:
    """Return if ``repo_id`` (at ``revision``) can be loaded from the Hub (or, offline, from the cache); else
    raise :class:`HubUnreachableError` with ``local`` (how to give a local copy instead) as the fix."""
    from huggingface_hub import constants, is_offline_mode, try_to_load_from_cache

    cached = repo_type == "model" and isinstance(
        try_to_load_from_cache(repo_id, "config.json", revision=revision), str
    )
    if is_offline_mode():
        if repo_type == "model" and not cached:
            raise HubUnreachableError(
                f"HF_HUB_OFFLINE is set and the {repo_type} {repo_id} is not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); {local}, or unset HF_HUB_OFFLINE to download it"
            )
        return
    reason = hub_unreachable()
    if reason is None:
        return
    offline = (
        "it is in the local cache: set HF_HUB_OFFLINE=1 to load it from there"
        if cached
        else "if it is in the local cache, set HF_HUB_OFFLINE=1"
    )
    raise HubUnreachableError(
        f"cannot reach the Hugging Face Hub ({constants.ENDPOINT}: {reason}) to load the {repo_type} {repo_id}; "
        f"{local}, or, {offline}"
    )
