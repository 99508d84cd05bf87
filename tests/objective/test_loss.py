"""sami_loss: hand-computed examples, limits, weights, temperature, gradients, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sami.objective import mi_lower_bound, reference_kl, sami_loss


def close(actual: torch.Tensor, expected: float | list[float], tol: float = 1e-6) -> None:
    """``actual`` (one value per query) equals ``expected`` (one number for every query, or one per query)."""
    expected = torch.as_tensor(expected, dtype=actual.dtype).expand(actual.shape)
    torch.testing.assert_close(actual, expected, atol=tol, rtol=0)


def test_two_by_two_by_hand():
    """logp = [[-1, -3], [-2, -2]] (one query, C = 2).

    rows:  row 0: -log softmax([-1, -3])[0] = log(1 + e^-2) = 0.126928
           row 1: -log softmax([-2, -2])[1] = log 2          = 0.693147   -> CE_rows = 0.410038
    cols:  col 0: -log softmax([-1, -2])[0] = log(1 + e^-1) = 0.313262
           col 1: -log softmax([-3, -2])[1] = log(1 + e^-1) = 0.313262   -> CE_cols = 0.313262
    loss = (0.410038 + 0.313262) / 2 = 0.361650
    bounds: log 2 - CE: rows 0.283109, cols 0.379885, mean 0.331497
    accuracy: rows 1/2 (row 1 is a tie, which counts as a miss), cols 2/2
    margin: mean diagonal (-1 - 2) / 2 = -1.5 minus mean off-diagonal (-3 - 2) / 2 = -2.5 -> 1.0
    """
    out = sami_loss(torch.tensor([[[-1.0, -3.0], [-2.0, -2.0]]]))
    close(out.ce_rows, 0.410038)
    close(out.ce_cols, 0.313262)
    close(out.loss, 0.361650)
    close(out.mi_bound_rows, 0.283109)
    close(out.mi_bound_cols, 0.379885)
    close(out.mi_bound, 0.331497)
    close(out.accuracy_rows, 0.5)
    close(out.accuracy_cols, 1.0)
    close(out.logp_matched, -1.5)
    close(out.logp_mismatched, -2.5)
    close(out.margin, 1.0)


def test_three_by_three_by_hand():
    """logp = log(P / 16), P = [[2, 1, 1], [2, 4, 2], [1, 1, 6]] (softmax ignores the constant 1/16).

    rows:  -log(P_ii / sum_j P_ij) = log(4/2), log(8/4), log(8/6)  -> CE_rows = log(2 * 2 * 4/3) / 3 = log(16/3) / 3
    cols:  -log(P_jj / sum_i P_ij) = log(5/2), log(6/4), log(9/6)  -> CE_cols = log(5/2 * 3/2 * 3/2) / 3 = log(45/8) / 3
    loss = (0.557992 + 0.575740) / 2 = 0.566866; bound = log 3 - loss = 0.531746
    accuracy: rows 3/3; cols 2/3 (column 0 ties: P_00 = P_10 = 2)
    margin: (log 2 + log 4 + log 6) / 3 - (4 log 1 + 2 log 2) / 6 = log(48) / 3 - log(2) / 3 = log(24) / 3
    """
    P = torch.tensor([[[2.0, 1.0, 1.0], [2.0, 4.0, 2.0], [1.0, 1.0, 6.0]]])
    out = sami_loss(torch.log(P / 16))
    close(out.ce_rows, math.log(16 / 3) / 3)
    close(out.ce_cols, math.log(45 / 8) / 3)
    close(out.loss, 0.566866)
    close(out.mi_bound, math.log(3) - 0.566866)
    close(out.accuracy_rows, 1.0)
    close(out.accuracy_cols, 2 / 3)
    close(out.margin, math.log(24) / 3)


def test_matches_cross_entropy_reference():
    logp = torch.randn(4, 5, 5) * 3 - 10
    target = torch.arange(5).repeat(4)
    # row b*C+i of logp: softmax over j; then the mean over the C rows of each query
    rows = F.cross_entropy(logp.reshape(20, 5), target, reduction="none").view(4, 5).mean(1)  # (B,)
    cols = F.cross_entropy(logp.transpose(1, 2).reshape(20, 5), target, reduction="none").view(4, 5).mean(1)
    out = sami_loss(logp, row_weight=0.3, col_weight=0.9)
    torch.testing.assert_close(out.ce_rows, rows)
    torch.testing.assert_close(out.ce_cols, cols)
    torch.testing.assert_close(out.loss, 0.3 * rows + 0.9 * cols)
    # the batch means are the cross-entropies over all B * C rows
    torch.testing.assert_close(out.ce_rows.mean(), F.cross_entropy(logp.reshape(20, 5), target))
    torch.testing.assert_close(out.ce_cols.mean(), F.cross_entropy(logp.transpose(1, 2).reshape(20, 5), target))


@pytest.mark.parametrize("C", [2, 3, 5])
def test_uniform_matrix_gives_log_c_and_zero_bound(C):
    out = sami_loss(torch.full((3, C, C), -7.0))
    close(out.loss, math.log(C))
    close(out.mi_bound, 0.0)
    close(out.mi_bound_rows, 0.0)
    close(out.mi_bound_cols, 0.0)
    close(out.accuracy_rows, 0.0)  # all ties
    close(out.margin, 0.0)


def test_statistics_are_per_query():
    """Each query's values are those of the query alone; the batch value is their mean."""
    logp = torch.randn(3, 4, 4) * 2
    out = sami_loss(logp)
    for b in range(3):
        alone = sami_loss(logp[b : b + 1])
        for name, value in vars(out).items():
            torch.testing.assert_close(value[b : b + 1], getattr(alone, name), msg=name)
    off = ~torch.eye(4, dtype=torch.bool)
    torch.testing.assert_close(out.logp_mismatched.mean(), logp[:, off].mean())
    torch.testing.assert_close(out.logp_matched.mean(), logp.diagonal(dim1=1, dim2=2).mean())


def test_perfect_matrix_approaches_log_c():
    logp = torch.full((2, 4, 4), -100.0) + torch.eye(4) * 90
    close(sami_loss(logp).mi_bound, math.log(4), tol=1e-4)
    close(sami_loss(logp).accuracy_cols, 1.0)


def test_row_only_and_column_only():
    logp = torch.randn(2, 3, 3)
    both = sami_loss(logp)
    rows = sami_loss(logp, row_weight=1.0, col_weight=0.0)
    cols = sami_loss(logp, row_weight=0.0, col_weight=1.0)
    torch.testing.assert_close(rows.loss, both.ce_rows)
    torch.testing.assert_close(cols.loss, both.ce_cols)
    torch.testing.assert_close(both.loss, (rows.loss + cols.loss) / 2)
    # the bounds are reported for both directions whatever the weights
    torch.testing.assert_close(rows.mi_bound_cols, both.mi_bound_cols)


def test_temperature_divides_the_logits():
    logp = torch.randn(2, 3, 3) * 4
    torch.testing.assert_close(sami_loss(logp, temperature=2.0).loss, sami_loss(logp / 2).loss)
    close(sami_loss(logp, temperature=1e6).loss, math.log(3), tol=1e-4)  # a hot softmax knows nothing
    # the margin and accuracies describe logp itself, not the tempered logits
    torch.testing.assert_close(sami_loss(logp, temperature=3.0).margin, sami_loss(logp).margin)


def test_gradient_is_softmax_minus_identity():
    """d CE_rows / d L[b, i, j] = (softmax_j(L[b, i])_j - [i == j]) / (B * C), and likewise for columns."""
    B, C = 2, 3
    logp = torch.randn(B, C, C, requires_grad=True)
    out = sami_loss(logp, row_weight=0.25, col_weight=0.75)
    out.loss.mean().backward()
    eye = torch.eye(C)
    expected = (0.25 * (logp.softmax(dim=2) - eye) + 0.75 * (logp.softmax(dim=1) - eye)) / (B * C)
    torch.testing.assert_close(logp.grad, expected.detach())
    for name in ("ce_rows", "mi_bound", "accuracy_rows", "margin"):
        assert not getattr(out, name).requires_grad


def test_gradient_accumulation_equals_one_large_batch():
    """Two micro-batches of 3 queries, each mean loss / 2, give the gradient of the batch of 6; so do unequal
    micro-batches (2 + 4 queries), each summed loss / 6 (what the trainer does)."""
    logp = torch.randn(6, 3, 3, requires_grad=True)
    sami_loss(logp).loss.mean().backward()
    large = logp.grad.clone()
    logp.grad = None
    for half in logp.split(3):
        (sami_loss(half).loss.mean() / 2).backward()
    torch.testing.assert_close(logp.grad, large)
    logp.grad = None
    for part in logp.split([2, 4]):
        (sami_loss(part).loss.sum() / 6).backward()
    torch.testing.assert_close(logp.grad, large)


def test_outputs_are_per_query_float32():
    out = sami_loss(torch.randn(2, 2, 2, dtype=torch.bfloat16))
    for name, value in vars(out).items():
        assert value.shape == (2,) and value.dtype == torch.float32, name


def test_mi_lower_bound_matches_loss_output():
    logp = torch.randn(3, 4, 4, requires_grad=True)
    torch.testing.assert_close(mi_lower_bound(logp), sami_loss(logp).mi_bound)
    assert not mi_lower_bound(logp).requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"row_weight": -0.1}, "must be >= 0"),
        ({"col_weight": -1.0}, "must be >= 0"),
        ({"row_weight": 0.0, "col_weight": 0.0}, "at least one > 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sami_loss(torch.zeros(1, 2, 2), **kwargs)


@pytest.mark.parametrize("shape, match", [((2, 2), r"\(B, C, C\)"), ((1, 2, 3), r"\(B, C, C\)"), ((1, 1, 1), "C >= 2")])
def test_invalid_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        sami_loss(torch.zeros(shape))


def test_reference_kl_by_hand_on_the_matched_tokens_only():
    """Two queries, C = 2; cells (b * C + i) * C + j. Only cells with i == j (0, 3, 4, 7) count.

    query 0: matched tokens with log r = log p_ref - log p = 0 and ln 2 -> k3 = 0 and 2 - ln 2 - 1
    query 1: one matched token with log r = -1 -> k3 = e^-1 + 1 - 1 = e^-1
    the off-diagonal tokens (cells 1, 2, 5) differ a lot and must not count.
    """
    cells = torch.tensor([0, 3, 1, 2, 4, 5])
    logp = torch.tensor([-1.0, -2.0, -0.1, -0.1, -1.0, -0.1], requires_grad=True)
    ref = torch.tensor([-1.0, -2.0 + math.log(2), -9.0, -9.0, -2.0, -9.0])
    kl = reference_kl(logp, ref, cells, num_constitutions=2, num_queries=2)
    close(kl, [(0 + 1 - math.log(2)) / 2, math.exp(-1)])
    kl.sum().backward()
    assert logp.grad[[2, 3, 5]].abs().max() == 0  # mismatched tokens get no gradient
    assert logp.grad[0] == 0  # equal to the reference: k3 and its gradient are 0
    assert logp.grad[1] < 0  # the reference likes this token more: the penalty pushes log p up


def test_reference_kl_is_never_negative():
    torch.manual_seed(0)
    cells = torch.randint(0, 3 * 9, (200,))
    cells[:27] = torch.arange(27)  # every cell, so every query has matched tokens
    kl = reference_kl(torch.randn(200), torch.randn(200), cells, num_constitutions=3, num_queries=3)
    assert (kl > 0).all()
