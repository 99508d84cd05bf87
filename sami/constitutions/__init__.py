"""Constitutions: which principles, affirmed or negated, each query is answered under, and their text."""

from sami.constitutions.render import render_constitution
from sami.constitutions.samplers import (
    SCHEMES,
    Constitution,
    ConstitutionSampler,
    DiverseSampler,
    FixedPairSampler,
    NegationsSampler,
    Stance,
    build_sampler,
    query_rng,
)

__all__ = [
    "SCHEMES",
    "Constitution",
    "ConstitutionSampler",
    "DiverseSampler",
    "FixedPairSampler",
    "NegationsSampler",
    "Stance",
    "build_sampler",
    "query_rng",
    "render_constitution",
]
