"""Win rates and their statistics: pure functions over verdicts (the paper's evaluation protocol).

Three estimates of "how often does the judge prefer the candidate", each with a standard
error, a 95% confidence interval and a two-sided test against 0.5:

* **raw**: the mean score over pairs (win 1, tie 0.5, unparsed 0.5, loss 0); a one-sample
  t-test against 0.5 (equal to ``scipy.stats.ttest_1samp``; its interval clipped to [0, 1]).
* **balanced** (the paper's length-corrected win rate): the mean of the win rate over pairs
  where the candidate's response is longer than the baseline's and the win rate over pairs
  where it is shorter; pairs of equal length are left out and counted. A judge that simply
  prefers longer answers gets ~0.5, whatever the candidate's length distribution.
  SE = sqrt(se_longer² + se_shorter²) / 2, Welch-Satterthwaite degrees of freedom.
* **lc** (logistic length-controlled, in the style of AlpacaEval 2 LC): fit
  ``P(win) = sigmoid(b0 + b1 * z)`` with ``z = (len_cand - len_base) / sd(len_cand - len_base)``
  (standardised, not centred, so z = 0 means equal length) by maximum quasi-likelihood (scores
  of 0.5 enter as half a win), and report ``sigmoid(b0)``, the predicted win rate at equal
  length. SE of b0 from the sandwich (robust) covariance; the CI is ``sigmoid(b0 ± t * se)``,
  the test is b0 = 0; the estimate's SE is the delta method ``p (1 - p) se(b0)``. Equal length
  must lie within the data: when the candidate is longer (or shorter) in every pair, ``sigmoid(b0)``
  would be an extrapolation, and the rate is not estimated (``nan``, with a note), as the
  balanced rate is not. Nor is it when the length difference separates wins from losses (a
  threshold on it predicts every score): the fit then has no finite optimum, and the rate at equal
  length would be set by the ridge.

Statistics are computed over *pairs*: with ``both_orders`` the two judgements of a pair are
averaged first, so they are not counted as independent. Counts of wins, losses, ties,
unparsed verdicts and failed requests are always reported beside the rates.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
from scipy import stats

from sami.records import Verdict

CONFIDENCE = 0.95
NULL = 0.5


@dataclass(frozen=True)
class WinRate:
    """One win-rate estimate with its uncertainty.

    Args:
        method: ``"raw"``, ``"balanced"`` or ``"lc"``.
        estimate: the win rate (``nan`` when it cannot be computed; ``note`` says why).
        se: its standard error.
        ci_low, ci_high: the 95% confidence interval.
        t_stat, p_value, df: two-sided t-test against 0.5.
        n: pairs used.
        details: method-specific numbers (group sizes and rates; logistic coefficients).
        note: why the estimate is missing or degenerate, else ``""``.
    """

    method: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_value: float
    df: float
    n: int
    details: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))


def _json_safe(value):
    """NaN/inf -> None so the summary is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _missing(method: str, n: int, note: str, **details) -> WinRate:
    nan = float("nan")
    return WinRate(method, nan, nan, nan, nan, nan, nan, nan, n, details, note)


def _t_test(method: str, estimate: float, se: float, df: float, n: int, details: dict, note: str = "") -> WinRate:
    """CI and two-sided p-value of ``estimate`` against 0.5 from its SE and degrees of freedom."""
    if se > 0 and math.isfinite(se) and df > 0:
        t_stat = (estimate - NULL) / se
        p_value = float(2 * stats.t.sf(abs(t_stat), df))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
        low, high = max(0.0, estimate - half), min(1.0, estimate + half)  # a win rate lives in [0, 1]
        return WinRate(method, estimate, se, low, high, t_stat, p_value, df, n, details, note)
    if se == 0:  # no spread at all: the interval is a point; the test is decided (or undefined at 0.5)
        t_stat = math.copysign(math.inf, estimate - NULL) if estimate != NULL else float("nan")
        p_value = 0.0 if estimate != NULL else 1.0
        note = note or "no variation in the scores"
        return WinRate(method, estimate, 0.0, estimate, estimate, t_stat, p_value, df, n, details, note)
    nan = float("nan")
    return WinRate(method, estimate, nan, nan, nan, nan, nan, df, n, details, note or "too few pairs for a SE")


# ---------------------------------------------------------------------------- the three rates
def raw_win_rate(scores: Sequence[float]) -> WinRate:
    """Mean score with a one-sample t-test against 0.5 (ties and unparsed count 0.5).

    >>> raw_win_rate([1, 1, 0, 0.5]).estimate
    0.625
    """
    y = np.asarray(scores, dtype=float)
    n = len(y)
    if n == 0:
        return _missing("raw", 0, "no pairs")
    mean = float(y.mean())
    se = float(y.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return _t_test("raw", mean, se, n - 1, n, {})


def balanced_win_rate(
    scores: Sequence[float], candidate_lengths: Sequence[float], baseline_lengths: Sequence[float]
) -> WinRate:
    """The paper's length-corrected win rate: mean of the win rates over longer and over shorter candidates.

    >>> balanced_win_rate([1, 1, 1, 0, 1, 0], [9, 9, 9, 9, 1, 1], [5, 5, 5, 5, 5, 5]).estimate  # (0.75 + 0.5) / 2
    0.625
    """
    y, cand, base = (np.asarray(v, dtype=float) for v in (scores, candidate_lengths, baseline_lengths))
    longer, shorter = cand > base, cand < base
    n_longer, n_shorter = int(longer.sum()), int(shorter.sum())
    details = {
        "n_longer": n_longer,
        "n_shorter": n_shorter,
        "n_equal": int(len(y) - n_longer - n_shorter),
        "win_rate_longer": float(y[longer].mean()) if n_longer else float("nan"),
        "win_rate_shorter": float(y[shorter].mean()) if n_shorter else float("nan"),
    }
    n = n_longer + n_shorter
    if not n_longer or not n_shorter:
        side = "longer" if not n_longer else "shorter"
        return _missing("balanced", n, f"no pair where the candidate is {side} than the baseline", **details)
    estimate = (details["win_rate_longer"] + details["win_rate_shorter"]) / 2
    if n_longer < 2 or n_shorter < 2:
        return _t_test("balanced", estimate, float("nan"), float("nan"), n, details, "a length group has < 2 pairs")
    var_l = float(y[longer].var(ddof=1)) / n_longer  # se_longer²
    var_s = float(y[shorter].var(ddof=1)) / n_shorter
    se = 0.5 * math.sqrt(var_l + var_s)
    denominator = var_l**2 / (n_longer - 1) + var_s**2 / (n_shorter - 1)
    df = (var_l + var_s) ** 2 / denominator if denominator > 0 else float(n - 2)
    return _t_test("balanced", estimate, se, df, n, details)


LengthFeature = Literal["linear", "tanh"]


def fit_fractional_logit(
    X: np.ndarray, y: np.ndarray, ridge: float = 0.0, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Maximise ``sum y log p + (1 - y) log(1 - p)``, ``p = sigmoid(X b)``, by Newton's method.

    ``y`` may be fractional (0.5 for a tie). ``ridge`` penalises every coefficient but the first
    (the intercept). Returns ``(b, sandwich covariance of b, converged)``.
    """
    n, k = X.shape
    penalty = np.full(k, ridge)
    penalty[0] = 0.0
    beta = np.zeros(k)

    def objective(b):
        eta = X @ b
        return float(np.sum(y * eta - np.logaddexp(0, eta)) - 0.5 * np.sum(penalty * b**2))

    converged = False
    current = objective(beta)
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-(X @ beta)))
        gradient = X.T @ (y - p) - penalty * beta
        hessian = (X * (p * (1 - p))[:, None]).T @ X + np.diag(penalty)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        while scale > 1e-8:  # step halving keeps every step an ascent
            candidate = beta + scale * step
            value = objective(candidate)
            if value >= current - 1e-12:
                break
            scale /= 2
        beta, previous, current = candidate, current, value
        if np.max(np.abs(scale * step)) < tol or abs(current - previous) < tol * (1 + abs(current)):
            converged = True
            break
    p = 1 / (1 + np.exp(-(X @ beta)))
    bread = np.linalg.pinv((X * (p * (1 - p))[:, None]).T @ X + np.diag(penalty))
    meat = (X * ((y - p) ** 2)[:, None]).T @ X
    correction = n / (n - k) if n > k else float("nan")  # HC1 small-sample correction
    return beta, bread @ meat @ bread * correction, converged


def length_separates(length_difference: np.ndarray, scores: np.ndarray) -> bool:
    """Whether a threshold on the length difference predicts every score: losses on one side, wins on the
    other, and any fractional score (tie, unparsed, split orders) exactly at the threshold. The logistic
    fit then has no finite optimum (the slope runs to infinity), whatever the ridge makes of it."""
    for x in (length_difference, -length_difference):
        losses, wins = x[scores == 0], x[scores == 1]
        between = x[(scores > 0) & (scores < 1)]
        if not len(losses) and not len(wins):
            continue
        highest_loss = losses.max() if len(losses) else -np.inf
        lowest_win = wins.min() if len(wins) else np.inf
        if highest_loss > lowest_win:
            continue
        if not len(between) or (np.all(between == between[0]) and highest_loss <= between[0] <= lowest_win):
            return True
    return False


def length_controlled_win_rate(
    scores: Sequence[float],
    candidate_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    feature: LengthFeature = "linear",
    ridge: float = 1e-3,
) -> WinRate:
    """Logistic length-controlled win rate: the predicted win rate at equal length.

    Args:
        scores: per-pair scores in [0, 1].
        candidate_lengths, baseline_lengths: per-pair lengths (words or tokens).
        feature: ``"linear"`` uses ``z = d / sd(d)``; ``"tanh"`` uses ``tanh(d / sd(d))`` as
            AlpacaEval 2 LC does, which limits the pull of extreme length differences.
        ridge: a small L2 penalty on the length coefficient (not the intercept), which keeps
            the fit finite when length separates wins from losses.

    ``details`` holds ``intercept``, ``slope``, their SEs, ``length_sd`` and ``converged``.
    """
    y, cand, base = (np.asarray(v, dtype=float) for v in (scores, candidate_lengths, baseline_lengths))
    n = len(y)
    if n < 2:
        return _missing("lc", n, "too few pairs")
    d = cand - base
    sd = float(d.std(ddof=1))
    if sd > 0 and not (np.any(d >= 0) and np.any(d <= 0)):
        side, other = ("longer", "shorter") if d.min() > 0 else ("shorter", "longer")
        return _missing(
            "lc", n, f"the candidate's response is {side} than the baseline's in every pair, so the win rate at "
            f"equal length would be an extrapolation; it needs pairs where the candidate is {other} (or of equal "
            "length) too", length_sd=sd,
        )
    if sd > 0:
        z = d / sd
        X = np.column_stack([np.ones(n), np.tanh(z) if feature == "tanh" else z])
    elif np.all(d == 0):  # every pair of equal length: nothing to control for; intercept only
        X = np.ones((n, 1))
    else:
        return _missing("lc", n, "the length difference is the same for every pair, so it cannot be separated "
                        "from the intercept")
    if np.all(y == y[0]) and y[0] in (0.0, 1.0):  # separation: the MLE is at infinity
        return _t_test("lc", float(y[0]), 0.0, n - X.shape[1], n, {"length_sd": sd}, "every pair has the same score")
    if sd > 0 and length_separates(d, y):
        return _missing(
            "lc", n, "the length difference separates wins from losses (a threshold on it predicts every score), so "
            "the fit has no finite optimum and its win rate at equal length is set by the ridge, not the data",
            length_sd=sd,
        )
    beta, cov, converged = fit_fractional_logit(X, y, ridge=ridge)
    b0, se_b0 = float(beta[0]), float(math.sqrt(max(cov[0, 0], 0.0)))
    p = 1 / (1 + math.exp(-b0))
    details = {
        "intercept": b0,
        "intercept_se": se_b0,
        "slope": float(beta[1]) if len(beta) > 1 else 0.0,
        "slope_se": float(math.sqrt(max(cov[1, 1], 0.0))) if len(beta) > 1 else 0.0,
        "length_sd": sd,
        "feature": feature,
        "converged": converged,
    }
    df = n - X.shape[1]
    note = "" if converged else "the logistic fit did not converge"
    if not (se_b0 > 0 and math.isfinite(se_b0)):
        return _t_test("lc", p, float("nan") if not math.isfinite(se_b0) else 0.0, df, n, details, note)
    t_stat = b0 / se_b0
    p_value = float(2 * stats.t.sf(abs(t_stat), df))
    tcrit = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))
    low, high = (1 / (1 + math.exp(-(b0 + s * tcrit * se_b0))) for s in (-1, 1))
    return WinRate("lc", p, p * (1 - p) * se_b0, low, high, t_stat, p_value, df, n, details, note)


# ---------------------------------------------------------------------------- from verdicts
@dataclass(frozen=True)
class PairScores:
    """Verdicts collapsed to one row per pair (both orders averaged)."""

    pair_ids: list[str]
    scores: np.ndarray
    candidate_lengths: np.ndarray
    baseline_lengths: np.ndarray


def pair_scores(verdicts: Iterable[Verdict], length: Literal["words", "tokens"] = "words") -> PairScores:
    """Average the judgements of each pair (both orders) and take its lengths.

    ``length="tokens"`` uses token counts where both are known and words otherwise.
    """
    groups: OrderedDict[str, list[Verdict]] = OrderedDict()
    for verdict in verdicts:
        groups.setdefault(verdict.pair_id, []).append(verdict)
    ids, scores, cand, base = [], [], [], []
    for pair_id, group in groups.items():
        first = group[0]
        ids.append(pair_id)
        scores.append(sum(v.score for v in group) / len(group))
        if length == "tokens" and first.candidate_tokens is not None and first.baseline_tokens is not None:
            cand.append(first.candidate_tokens)
            base.append(first.baseline_tokens)
        else:
            cand.append(first.candidate_words)
            base.append(first.baseline_words)
    return PairScores(ids, np.asarray(scores, float), np.asarray(cand, float), np.asarray(base, float))


def outcome_counts(verdicts: Sequence[Verdict]) -> dict:
    """Judgements, pairs, and how many were wins, losses, ties, unparsed (failed requests among them)."""
    counts = {"judgements": len(verdicts), "pairs": len({v.pair_id for v in verdicts})}
    for outcome in ("win", "loss", "tie", "unparsed"):
        counts[outcome] = sum(v.outcome == outcome for v in verdicts)
    counts["failed"] = sum(v.outcome == "unparsed" and v.error is not None for v in verdicts)
    counts["parse_failures"] = counts["unparsed"] - counts["failed"]
    counts["unparsed_fraction"] = counts["unparsed"] / len(verdicts) if verdicts else 0.0
    if verdicts:
        positions = [v for v in verdicts if v.judge_verdict in ("A", "B")]
        counts["judge_chose_a_fraction"] = (
            sum(v.judge_verdict == "A" for v in positions) / len(positions) if positions else float("nan")
        )
    return counts


def win_rates(verdicts: Sequence[Verdict], length: Literal["words", "tokens"] = "words") -> dict:
    """Counts, mean lengths and the three win rates of one set of verdicts (JSON-safe)."""
    pairs = pair_scores(verdicts, length)
    return _json_safe(
        {
            "counts": outcome_counts(verdicts),
            "length": {
                "unit": length,
                "candidate_mean": float(pairs.candidate_lengths.mean()) if len(pairs.scores) else float("nan"),
                "baseline_mean": float(pairs.baseline_lengths.mean()) if len(pairs.scores) else float("nan"),
                "candidate_longer_fraction": float(np.mean(pairs.candidate_lengths > pairs.baseline_lengths))
                if len(pairs.scores)
                else float("nan"),
            },
            "raw": raw_win_rate(pairs.scores).to_dict(),
            "balanced": balanced_win_rate(pairs.scores, pairs.candidate_lengths, pairs.baseline_lengths).to_dict(),
            "lc": length_controlled_win_rate(pairs.scores, pairs.candidate_lengths, pairs.baseline_lengths).to_dict(),
        }
    )


def principle_keys(verdict: Verdict) -> list[str]:
    """The breakdown groups of a verdict: each stance of its constitution (``"concise"``,
    ``"concise (antithesis)"``)."""
    affirmed = verdict.affirmed or [True] * len(verdict.principles)
    return [name if yes else f"{name} (antithesis)" for name, yes in zip(verdict.principles, affirmed)]


def breakdown(
    verdicts: Sequence[Verdict],
    keys: Callable[[Verdict], Iterable[str]],
    length: Literal["words", "tokens"] = "words",
) -> dict[str, dict]:
    """Win rates per group; a verdict joins every group ``keys(verdict)`` names."""
    groups: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        for key in keys(verdict):
            groups.setdefault(key, []).append(verdict)
    return {key: win_rates(group, length) for key, group in sorted(groups.items())}


def summarize(verdicts: Sequence[Verdict], length: Literal["words", "tokens"] = "words") -> dict:
    """Everything ``sami evaluate`` writes to its summary: overall, per principle, per split."""
    verdicts = list(verdicts)
    first = verdicts[0] if verdicts else None
    summary = {
        "candidate": first.candidate if first else None,
        "baseline": first.baseline if first else None,
        "judge": first.judge if first else None,
        **win_rates(verdicts, length),
        "by_principle": breakdown(verdicts, principle_keys, length),
        "by_split": breakdown(verdicts, lambda v: [v.split or "unspecified"], length),
    }
    return summary
