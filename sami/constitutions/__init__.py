from sami.constitutions.render import render_constitution
from sami.constitutions.samplers import (
    Constitution,
    ConstitutionSampler,
    DiverseSampler,
    PositiveVsNegatedSampler,
    Stance,
    build_sampler,
    query_rng,
)

__all__ = [
    "Constitution",
    "ConstitutionSampler",
    "DiverseSampler",
    "PositiveVsNegatedSampler",
    "Stance",
    "build_sampler",
    "query_rng",
    "render_constitution",
]
