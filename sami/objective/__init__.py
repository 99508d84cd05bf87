"""The SAMI objective: the contrastive log-prob matrix and the InfoNCE loss on it (the paper's method)."""

from sami.objective.logprobs import (
    AGGREGATIONS,
    LAYOUTS,
    ContrastiveExample,
    collate_contrastive,
    contrastive_logprobs,
    contrastive_matrix,
    resolve_layout,
    response_token_logprobs,
)
from sami.objective.loss import SAMILossOutput, mi_lower_bound, reference_kl, sami_loss

__all__ = [
    "AGGREGATIONS",
    "LAYOUTS",
    "ContrastiveExample",
    "SAMILossOutput",
    "collate_contrastive",
    "contrastive_logprobs",
    "contrastive_matrix",
    "mi_lower_bound",
    "reference_kl",
    "resolve_layout",
    "response_token_logprobs",
    "sami_loss",
]
