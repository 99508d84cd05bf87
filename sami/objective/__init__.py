"""The SAMI objective: the contrastive log-prob matrix and the InfoNCE loss on it (the paper's method)."""

from sami.objective.logprobs import (
    AGGREGATIONS,
    LAYOUTS,
    ContrastiveExample,
    collate_contrastive,
    contrastive_logprobs,
    resolve_layout,
)
from sami.objective.loss import SAMILossOutput, mi_lower_bound, sami_loss

__all__ = [
    "AGGREGATIONS",
    "LAYOUTS",
    "ContrastiveExample",
    "SAMILossOutput",
    "collate_contrastive",
    "contrastive_logprobs",
    "mi_lower_bound",
    "resolve_layout",
    "sami_loss",
]
