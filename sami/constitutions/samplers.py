"""Constitution samplers: which principles, affirmed or negated, each query is answered under.

A constitution is an ordered list of *stances*: a principle stated as itself (affirmed) or as
its antithesis (negated). Per query a sampler returns C >= 2 distinct constitutions. Every
random choice comes from a ``random.Random`` seeded by (seed, query id), so a query gets the
same constitutions in every run and in every process (the paper's method).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import ClassVar, Protocol

from sami.errors import ConfigError
from sami.principles.io import Principle, PrincipleSet


@dataclass(frozen=True)
class Stance:
    """A principle as it appears in one constitution."""

    name: str
    affirmed: bool
    text: str

    @classmethod
    def of(cls, principle: Principle, affirmed: bool) -> Stance:
        return cls(principle.name, affirmed, principle.definition if affirmed else principle.antithesis)


@dataclass(frozen=True)
class Constitution:
    """An ordered tuple of stances; ``positive`` when every principle is affirmed."""

    stances: tuple[Stance, ...]

    @property
    def positive(self) -> bool:
        return all(s.affirmed for s in self.stances)

    @property
    def key(self) -> frozenset[tuple[str, bool]]:
        """Order-free identity: two constitutions with the same stances in another order are equal."""
        return frozenset((s.name, s.affirmed) for s in self.stances)

    def to_dict(self) -> dict:
        return {"stances": [{"name": s.name, "affirmed": s.affirmed, "text": s.text} for s in self.stances]}

    @classmethod
    def from_dict(cls, data: dict) -> Constitution:
        return cls(tuple(Stance(s["name"], bool(s["affirmed"]), s["text"]) for s in data["stances"]))


class ConstitutionSampler(Protocol):
    """Returns the C constitutions of one query."""

    num_constitutions: int

    def sample(self, rng: random.Random) -> list[Constitution]: ...


def query_rng(seed: int, query_id: str) -> random.Random:
    """A generator that depends only on the seed and the query id (stable across processes)."""
    return random.Random(f"sami:{seed}:{query_id}")


def _check_count(num_constitutions: int, available: int, scheme: str) -> None:
    if num_constitutions < 2:
        raise ConfigError(
            f"num_constitutions={num_constitutions}: SAMI contrasts at least 2 constitutions per query; set it to >= 2"
        )
    if num_constitutions > available:
        raise ConfigError(
            f"num_constitutions={num_constitutions} but the {scheme!r} scheme can form only {available} distinct "
            "constitutions from these principles; lower num_constitutions or add principles"
        )


@dataclass
class FixedPairSampler:
    """Scheme ``fixed_pair``: constitution 0 affirms every principle, the others negate a random
    non-empty subset each; the principles keep the file's order.

    The paper's dialogue scheme (HH-RLHF: {helpful, harmless}, one or both negated).
    """

    principles: tuple[Principle, ...]
    num_constitutions: int = 2

    scheme: ClassVar[str] = "fixed_pair"
    shuffle_order: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_count(self.num_constitutions, 2 ** len(self.principles), self.scheme)

    def sample(self, rng: random.Random) -> list[Constitution]:
        order = list(self.principles)
        if self.shuffle_order:
            rng.shuffle(order)
        patterns = [p for p in itertools.product([True, False], repeat=len(order)) if not all(p)]
        negated = rng.sample(patterns, self.num_constitutions - 1)
        affirmations = [(True,) * len(order), *negated]
        return [Constitution(tuple(Stance.of(p, a) for p, a in zip(order, flags))) for flags in affirmations]


@dataclass
class NegationsSampler(FixedPairSampler):
    """Scheme ``negations``: :class:`FixedPairSampler` with the principle order shuffled per query.

    The paper's two-principle summarisation scheme (TL;DR: {concise, comprehensive}, both orders x
    negate the first, the second or both).
    """

    scheme: ClassVar[str] = "negations"
    shuffle_order: ClassVar[bool] = True


@dataclass
class DiverseSampler:
    """Scheme ``diverse``: k principles drawn from a larger pool; c_1 flips each at random, c_2 takes
    the opposite flips.

    The paper's diverse-principles scheme (llama3-70b): 2 of 15 training principles per query,
    c_2 the mirror image of c_1, order shuffled. With C > 2 the further constitutions are other
    distinct flip patterns of the same principles.
    """

    principles: tuple[Principle, ...]
    num_constitutions: int = 2
    principles_per_constitution: int = 2

    scheme: ClassVar[str] = "diverse"

    def __post_init__(self) -> None:
        k = self.principles_per_constitution
        if not 1 <= k <= len(self.principles):
            raise ConfigError(
                f"principles_per_constitution={k} must be between 1 and the {len(self.principles)} principles given"
            )
        _check_count(self.num_constitutions, 2**k, self.scheme)

    def sample(self, rng: random.Random) -> list[Constitution]:
        chosen = rng.sample(list(self.principles), self.principles_per_constitution)
        first = tuple(rng.random() < 0.5 for _ in chosen)
        patterns = [first, tuple(not a for a in first)]
        others = [p for p in itertools.product([True, False], repeat=len(chosen)) if p not in patterns]
        patterns += rng.sample(others, self.num_constitutions - 2)
        constitutions = []
        for flags in patterns:
            stances = [Stance.of(p, a) for p, a in zip(chosen, flags)]
            rng.shuffle(stances)
            constitutions.append(Constitution(tuple(stances)))
        return constitutions


SCHEMES = (FixedPairSampler.scheme, NegationsSampler.scheme, DiverseSampler.scheme)


def build_sampler(
    scheme: str,
    principle_set: PrincipleSet,
    num_constitutions: int = 2,
    split: str = "train",
    principles_per_constitution: int = 2,
) -> ConstitutionSampler:
    """The sampler of a scheme (``fixed_pair``, ``negations``, ``diverse``) over the principles of one
    split (``train``, or held-out ``eval``)."""
    principles = principle_set.by_split(split)
    if not principles:
        raise ConfigError(
            f"the principle set has no principles with split={split!r}; "
            f"mark some with 'split: {split}' or use split='train'"
        )
    if scheme == DiverseSampler.scheme:
        return DiverseSampler(principles, num_constitutions, principles_per_constitution)
    for sampler in (FixedPairSampler, NegationsSampler):
        if scheme == sampler.scheme:
            return sampler(principles, num_constitutions)
    raise ConfigError(f"unknown constitution scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
