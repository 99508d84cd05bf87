"""Constitution -> text, with the principle order optionally shuffled as augmentation."""

from __future__ import annotations

import random

from sami.constitutions.samplers import Constitution


def render_constitution(constitution: Constitution, rng: random.Random | None = None) -> str:
    """A numbered list of the constitution's stances; shuffled when an ``rng`` is given.

    >>> render_constitution(c)  # doctest: +SKIP
    '1. The summary is concise.\\n2. The summary omits the main point.'
    """
    stances = list(constitution.stances)
    if rng is not None:
        rng.shuffle(stances)
    return "\n".join(f"{index}. {stance.text}" for index, stance in enumerate(stances, start=1))
