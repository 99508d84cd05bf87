"""sami.hub_access: a hub id without network fails in a moment, naming the offline fixes.

The Hub's endpoint is pointed at a port on 127.0.0.1 where nothing listens (a refused connection, as
without network), and the Hugging Face cache at a folder holding one model in the cache's own layout.
"""

from __future__ import annotations

import socket
import time

import pytest

from sami.hub_access import HubUnreachableError, hub_unreachable, require_hub

LOCAL = "give a local checkpoint folder instead"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """No Hub (a closed port), online mode, and a cache holding the config of ``cached/model``."""
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--cached--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    return constants


def test_an_unreachable_hub_is_an_error_in_a_moment(hub):
    start = time.monotonic()
    assert hub_unreachable() is not None
    with pytest.raises(HubUnreachableError) as error:
        require_hub("someone/some-model", local=LOCAL)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert f"cannot reach the Hugging Face Hub ({hub.ENDPOINT}" in message and "someone/some-model" in message
    assert LOCAL in message and "if it is in the local cache, set HF_HUB_OFFLINE=1" in message
    with pytest.raises(HubUnreachableError, match="it is in the local cache: set HF_HUB_OFFLINE=1 to load it"):
        require_hub("cached/model", local=LOCAL)


def test_offline_mode_asks_nothing_and_needs_the_cache(hub, monkeypatch):
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    require_hub("cached/model", local=LOCAL)  # no probe, no error: from_pretrained reads the cache
    with pytest.raises(HubUnreachableError, match=r"HF_HUB_OFFLINE is set and the model someone/x is not in the "
                       r"Hugging Face cache .*give a local checkpoint folder instead, or unset HF_HUB_OFFLINE"):
        require_hub("someone/x", local=LOCAL)
    require_hub("someone/dataset", repo_type="dataset", local=LOCAL)  # datasets reads its own cache
