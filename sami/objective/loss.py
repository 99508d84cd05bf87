"""The SAMI loss: a contrastive (InfoNCE) bound on I(y; c | x), from a C x C log-prob matrix.

Fränken et al., "Self-Supervised Alignment with Mutual Information" (arXiv 2404.14313), Section 3:
for one query x with constitutions c_1..c_C and responses y_1..y_C (y_i sampled under c_i),
``logp[i, j] = log p(y_j | c_i, x)``. Row i asks "which response was written under c_i?",
column j asks "which constitution wrote y_j?"; both are cross-entropies against the identity,
and ``log C - CE`` is the InfoNCE lower bound on the conditional mutual information.
docs/objective.md maps every line to the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sami.errors import ConfigError


@dataclass
class SAMILossOutput:
    """What ``sami_loss`` returns: one value per query, all (B,) float32; ``loss`` carries the gradient.

    The batch value of each field is its mean over queries (every query has C rows, C columns and C(C-1)
    off-diagonal entries, so the mean of per-query means is the mean over the batch).

    Attributes:
        loss: ``row_weight * ce_rows + col_weight * ce_cols``, the value to minimise.
        ce_rows: mean over i of ``-log softmax_j(logp[b, i, :] / T)[i]``.
        ce_cols: mean over j of ``-log softmax_i(logp[b, :, j] / T)[j]``.
        mi_bound: ``(mi_bound_rows + mi_bound_cols) / 2``, the InfoNCE lower bound on I(y; c | x), in nats.
        mi_bound_rows: ``log C - ce_rows``.
        mi_bound_cols: ``log C - ce_cols``.
        accuracy_rows: fraction of rows whose diagonal entry is strictly the largest (ties count as misses).
        accuracy_cols: fraction of columns whose diagonal entry is strictly the largest.
        margin: ``logp_matched - logp_mismatched``.
        logp_matched: mean of the diagonal of ``logp[b]`` (a response under its own constitution).
        logp_mismatched: mean of the off-diagonal entries of ``logp[b]``.
    """

    loss: torch.Tensor
    ce_rows: torch.Tensor
    ce_cols: torch.Tensor
    mi_bound: torch.Tensor
    mi_bound_rows: torch.Tensor
    mi_bound_cols: torch.Tensor
    accuracy_rows: torch.Tensor
    accuracy_cols: torch.Tensor
    margin: torch.Tensor
    logp_matched: torch.Tensor
    logp_mismatched: torch.Tensor


def sami_loss(
    logp: torch.Tensor, row_weight: float = 0.5, col_weight: float = 0.5, temperature: float = 1.0
) -> SAMILossOutput:
    """The SAMI objective for a micro-batch of B queries with C constitutions each, one value per query.

    ``out.loss.mean()`` is the loss of the micro-batch. Per-query values make exact accumulation one line:
    summing ``out.loss.sum() / N`` over micro-batches that hold N queries in all gives the gradient of the
    mean over all N, whatever the micro-batch sizes.

    Args:
        logp (torch.Tensor): log-probabilities of shape (B, C, C), ``logp[b, i, j] = log p(y_j | c_i, x_b)``
            (from ``contrastive_logprobs``); the diagonal holds the matched pairs. C >= 2.
        row_weight (float): weight of the row cross-entropy (which response belongs to c_i). Paper: 0.5.
        col_weight (float): weight of the column cross-entropy (which constitution wrote y_j). Paper: 0.5.
        temperature (float): the logits of both softmaxes are ``logp / temperature``. Paper: 1.0.

    Returns:
        SAMILossOutput: the per-query loss (with grad) and detached per-query statistics worth logging.

    Raises:
        ValueError: if ``logp`` is not (B, C, C) with C >= 2, a weight is negative, both weights are 0,
            or the temperature is not positive.
    """
    _check_shape(logp)
    check_loss_settings(row_weight, col_weight, temperature)
    C = logp.shape[1]  # logp: (B, C, C)
    logits = logp.float() / temperature  # (B, C, C)
    ce_rows = -logits.log_softmax(dim=2).diagonal(dim1=1, dim2=2).mean(1)  # (B,): which response belongs to c_i
    ce_cols = -logits.log_softmax(dim=1).diagonal(dim1=1, dim2=2).mean(1)  # (B,): which constitution wrote y_j
    loss = row_weight * ce_rows + col_weight * ce_cols  # (B,), paper: (CE_rows + CE_cols) / 2

    with torch.no_grad():
        log_c = math.log(C)  # InfoNCE: I(y; c | x) >= log C - CE
        eye = torch.eye(C, dtype=torch.bool, device=logp.device)  # (C, C)
        diag = logp.detach().float().diagonal(dim1=1, dim2=2)  # (B, C)
        off = logp.detach().float().masked_fill(eye, -math.inf)  # (B, C, C), diagonal hidden
        accuracy_rows = (diag > off.amax(dim=2)).float().mean(1)  # (B, C) -> (B,)
        accuracy_cols = (diag > off.amax(dim=1)).float().mean(1)  # (B, C) -> (B,)
        logp_matched = diag.mean(1)  # (B,)
        logp_mismatched = logp.detach().float()[:, ~eye].mean(1)  # (B, C*(C-1)) -> (B,)
        bound_rows, bound_cols = log_c - ce_rows.detach(), log_c - ce_cols.detach()
    return SAMILossOutput(
        loss=loss,
        ce_rows=ce_rows.detach(),
        ce_cols=ce_cols.detach(),
        mi_bound=(bound_rows + bound_cols) / 2,
        mi_bound_rows=bound_rows,
        mi_bound_cols=bound_cols,
        accuracy_rows=accuracy_rows,
        accuracy_cols=accuracy_cols,
        margin=logp_matched - logp_mismatched,
        logp_matched=logp_matched,
        logp_mismatched=logp_mismatched,
    )


def mi_lower_bound(logp: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The InfoNCE lower bound on I(y; c | x) in nats per query, averaged over both directions (no grad).

    Args:
        logp (torch.Tensor): (B, C, C) matrix as for ``sami_loss``.
        temperature (float): as for ``sami_loss``.

    Returns:
        torch.Tensor: (B,), ``log C - (CE_rows + CE_cols) / 2``; ``.mean()`` is the batch's bound. 0 for a
        uniform matrix, approaching ``log C`` for a perfectly diagonal one.
    """
    return sami_loss(logp.detach(), temperature=temperature).mi_bound


def reference_kl(
    token_logp: torch.Tensor, ref_token_logp: torch.Tensor, token_cells: torch.Tensor, num_constitutions: int,
    num_queries: int,
) -> torch.Tensor:
    """Per query, the KL divergence of the model from a reference model per token of the matched responses.

    The penalty ``kl_coef * KL`` (the paper's optional KL to the base model; it used none) is estimated on the
    responses y_i of the diagonal, each under its own constitution c_i, with Schulman's k3 estimator
    ``r - log r - 1``, ``r = p_ref / p_theta`` per token: never negative, and 0 with a zero gradient while the
    model equals the reference (so it acts from the second optimiser step on).

    Args:
        token_logp (torch.Tensor): (N,) log-probs of the response tokens under the model (with grad), as
            ``response_token_logprobs`` returns them.
        ref_token_logp (torch.Tensor): (N,) the same tokens under the reference model (no grad).
        token_cells (torch.Tensor): (N,) each token's cell ``(b * C + i) * C + j``, from ``collate_contrastive``.
        num_constitutions (int): C.
        num_queries (int): B.

    Returns:
        torch.Tensor: (B,) the mean of k3 over the matched response tokens of each query.
    """
    C = num_constitutions
    cells = token_cells.to(token_logp.device)
    query, cell = cells // (C * C), cells % (C * C)
    matched = cell // C == cell % C  # (N,): y_i scored under c_i
    log_ratio = ref_token_logp.detach()[matched] - token_logp[matched]  # log r = log p_ref - log p_theta
    k3 = log_ratio.exp() - log_ratio - 1  # (M,) >= 0
    totals = k3.new_zeros(num_queries).index_add(0, query[matched], k3)  # (B,)
    counts = k3.new_zeros(num_queries).index_add(0, query[matched], torch.ones_like(k3))  # (B,)
    return totals / counts


def check_loss_settings(
    row_weight: float, col_weight: float, temperature: float, *, temperature_name: str = "temperature"
) -> None:
    """The one validation of the loss settings (``sami_loss`` and ``SAMIConfig`` call it).

    ``temperature_name`` is what the caller calls the temperature (``SAMIConfig``: ``loss_temperature``).
    """
    if row_weight < 0 or col_weight < 0:
        raise ConfigError(f"row_weight={row_weight}, col_weight={col_weight}: weights must be >= 0 (paper: 0.5, 0.5)")
    if row_weight == 0 and col_weight == 0:
        raise ConfigError("row_weight and col_weight are both 0: set at least one > 0 (paper: 0.5 and 0.5)")
    if not temperature > 0:
        raise ConfigError(f"{temperature_name} must be > 0 (paper: 1.0); got {temperature}")


def _check_shape(logp: torch.Tensor) -> None:
    if logp.dim() != 3 or logp.shape[1] != logp.shape[2]:
        raise ValueError(f"logp must have shape (B, C, C); got {tuple(logp.shape)}")
    if logp.shape[1] < 2:
        raise ValueError(f"SAMI needs at least 2 constitutions per query (C >= 2); got C = {logp.shape[1]}")
