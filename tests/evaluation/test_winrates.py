"""Win-rate statistics against hand-computed cases, scipy, and synthetic data with a planted length bias."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize, stats

from sami.evaluation import Verdict, balanced_win_rate, length_controlled_win_rate, raw_win_rate, summarize
from sami.evaluation.winrates import fit_fractional_logit, outcome_counts, pair_scores


def test_raw_hand_computed():
    """scores 1, 1, 0, 0.5: mean 0.625; deviations .375 .375 -.625 -.125 -> SS = .6875,
    var = .6875 / 3 = .22917, se = sqrt(.22917 / 4) = .23936, t = .125 / .23936 = .52223, df 3."""
    r = raw_win_rate([1, 1, 0, 0.5])
    assert r.estimate == 0.625 and r.n == 4 and r.df == 3
    assert r.se == pytest.approx(math.sqrt(0.6875 / 3 / 4))
    assert r.t_stat == pytest.approx(0.125 / math.sqrt(0.6875 / 12))
    assert r.p_value == pytest.approx(2 * stats.t.sf(0.52223, 3), abs=1e-5)
    half = stats.t.ppf(0.975, 3) * r.se
    assert half == pytest.approx(0.7617, abs=1e-4)
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)  # 0.625 -/+ 0.762, clipped to [0, 1]


def test_raw_matches_scipy_ttest():
    rng = np.random.default_rng(0)
    y = rng.choice([0, 0.5, 1], size=57, p=[0.3, 0.1, 0.6])
    r = raw_win_rate(y)
    ref = stats.ttest_1samp(y, 0.5)
    ci = ref.confidence_interval(0.95)
    assert r.t_stat == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high))


def test_raw_degenerate_cases():
    assert math.isnan(raw_win_rate([]).estimate)
    one = raw_win_rate([1.0])
    assert one.estimate == 1.0 and math.isnan(one.se)
    all_wins = raw_win_rate([1, 1, 1])
    assert all_wins.se == 0 and all_wins.p_value == 0.0 and all_wins.t_stat == math.inf
    all_ties = raw_win_rate([0.5, 0.5])
    assert all_ties.p_value == 1.0 and all_ties.note


def test_balanced_hand_computed():
    """Longer: scores 1, 1, 1, 0 -> 0.75 (var 0.25, se² 0.0625); shorter: 1, 0 -> 0.5 (var 0.5, se² 0.25);
    equal-length pair left out. Estimate (0.75 + 0.5) / 2 = 0.625, se = sqrt(0.3125) / 2 = 0.27951;
    Welch df = 0.3125² / (0.0625² / 3 + 0.25² / 1) = 1.5152."""
    scores = [1, 1, 1, 0, 1, 0, 0]
    cand = [9, 9, 9, 9, 1, 1, 5]
    base = [5, 5, 5, 5, 5, 5, 5]
    r = balanced_win_rate(scores, cand, base)
    assert r.estimate == pytest.approx(0.625)
    assert r.details == {"n_longer": 4, "n_shorter": 2, "n_equal": 1, "win_rate_longer": 0.75, "win_rate_shorter": 0.5}
    assert r.se == pytest.approx(math.sqrt(0.3125) / 2)
    assert r.df == pytest.approx(0.3125**2 / (0.0625**2 / 3 + 0.25**2 / 1))
    assert r.p_value == pytest.approx(2 * stats.t.sf(0.125 / r.se, r.df))


def test_balanced_needs_both_groups():
    r = balanced_win_rate([1, 0, 1], [5, 6, 7], [1, 1, 1])
    assert math.isnan(r.estimate) and "shorter" in r.note


def test_balanced_cancels_a_pure_length_preference():
    """A judge that only prefers the longer response: raw win rate follows the length mix, balanced is 0.5."""
    rng = np.random.default_rng(1)
    d = rng.choice([-10, 10], size=400, p=[0.2, 0.8])
    scores = (d > 0).astype(float)
    assert raw_win_rate(scores).estimate == pytest.approx(0.8, abs=0.05)
    assert balanced_win_rate(scores, 50 + d, np.full(400, 50)).estimate == 0.5


def test_logit_fit_matches_scipy_minimize():
    rng = np.random.default_rng(2)
    n = 300
    z = rng.normal(size=n)
    y = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.3, 0.1, 0.6])
    X = np.column_stack([np.ones(n), z])
    beta, cov, converged = fit_fractional_logit(X, y)

    def negative_loglik(b):
        eta = X @ b
        return -np.sum(y * eta - np.logaddexp(0, eta))

    reference = optimize.minimize(negative_loglik, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
    assert converged
    assert beta == pytest.approx(reference, abs=1e-5)
    assert np.all(np.diag(cov) > 0)


@pytest.mark.parametrize("feature", ["linear", "tanh"])
def test_lc_recovers_a_planted_length_effect(feature):
    """Wins drawn from P(win) = sigmoid(logit(0.6) + 1.0 * f(z)): the judge likes length, the candidate is
    usually longer, so the raw rate is inflated (~0.70); the LC rate recovers 0.6 within its CI."""
    rng = np.random.default_rng(3)
    n = 4000
    d = rng.normal(40, 60, n)
    z = d / d.std(ddof=1)
    f = np.tanh(z) if feature == "tanh" else z
    truth = 0.6
    p = 1 / (1 + np.exp(-(math.log(truth / (1 - truth)) + 1.0 * f)))
    wins = (rng.random(n) < p).astype(float)
    raw = raw_win_rate(wins)
    lc = length_controlled_win_rate(wins, 100 + d, np.full(n, 100.0), feature=feature)
    assert raw.estimate > 0.66 and raw.ci_low > truth  # the raw rate is biased
    assert lc.ci_low < truth < lc.ci_high
    assert lc.estimate == pytest.approx(truth, abs=0.025)
    assert lc.details["slope"] == pytest.approx(1.0, abs=0.12)
    assert lc.p_value < 1e-6  # 0.6 is clearly above 0.5 with n = 4000


def test_lc_coverage_and_se_are_calibrated():
    """Over 200 synthetic experiments the 95% CI covers the true value about 95% of the time."""
    rng = np.random.default_rng(4)
    truth, covered, estimates, ses = 0.55, 0, [], []
    for _ in range(200):
        n = 150
        d = rng.normal(20, 30, n)
        p = 1 / (1 + np.exp(-(math.log(truth / (1 - truth)) + 0.7 * d / d.std(ddof=1))))
        wins = (rng.random(n) < p).astype(float)
        r = length_controlled_win_rate(wins, 60 + d, np.full(n, 60.0))
        covered += r.ci_low < truth < r.ci_high
        estimates.append(r.estimate)
        ses.append(r.se)
    assert 0.90 <= covered / 200 <= 0.99
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.2)


def test_lc_equals_raw_when_lengths_are_equal():
    """Intercept only: sigmoid(b0) is the mean and the HC1 sandwich SE equals the t-test SE."""
    y = [1, 0, 1, 1, 0.5, 0, 1, 1]
    lc = length_controlled_win_rate(y, [7] * 8, [7] * 8)
    raw = raw_win_rate(y)
    assert lc.estimate == pytest.approx(raw.estimate)
    assert lc.se == pytest.approx(raw.se)


def test_lc_degenerate_cases():
    assert "same for every pair" in length_controlled_win_rate([1, 0, 1], [5, 5, 5], [3, 3, 3]).note
    separated = length_controlled_win_rate([1, 1, 1, 1], [1, 5, 9, 2], [3, 3, 3, 3])
    assert separated.estimate == 1.0 and separated.note
    # length perfectly separates wins and losses: no finite optimum, and the intercept would be the ridge's doing
    # (0.5 here, 0.07 with p = 0.04 when every baseline is one word shorter): not estimated
    for baseline in (5, 4):
        r = length_controlled_win_rate([0, 0, 1, 1, 0, 1], [1, 2, 8, 9, 3, 7], [baseline] * 6)
        assert math.isnan(r.estimate) and "separates wins from losses" in r.note
    # a tie exactly at the threshold still separates; one on the wrong side does not
    assert math.isnan(length_controlled_win_rate([0, 0.5, 1, 1], [1, 5, 8, 9], [5] * 4).estimate)
    r = length_controlled_win_rate([0, 0.5, 1, 1, 1], [1, 5, 8, 9, 2], [5] * 5)
    assert math.isfinite(r.estimate) and 0 < r.estimate < 1


def test_lc_does_not_extrapolate_to_equal_length():
    """A judge that always answers "A", a candidate always longer: raw 0.5 on 4 pairs. The fit's intercept is
    the win rate at a length difference no pair has (it gave 1.000 [0.996, 1.0], p = 0.04): not estimated."""
    scores, candidate, baseline = [1, 1, 0, 0], [10, 12, 14, 16], [5, 5, 5, 5]
    assert raw_win_rate(scores).estimate == 0.5
    lc = length_controlled_win_rate(scores, candidate, baseline)
    assert math.isnan(lc.estimate) and math.isnan(lc.ci_low) and math.isnan(lc.p_value) and lc.n == 4
    assert "longer than the baseline's in every pair" in lc.note and "extrapolation" in lc.note
    assert lc.to_dict()["estimate"] is None
    shorter = length_controlled_win_rate(scores, baseline, candidate)
    assert math.isnan(shorter.estimate) and "shorter than the baseline's in every pair" in shorter.note
    # one pair of equal length anchors the fit at zero: estimated, with an interval that says how little is known
    anchored = length_controlled_win_rate([*scores, 0], [*candidate, 5], [*baseline, 5])
    assert math.isfinite(anchored.estimate) and anchored.ci_high - anchored.ci_low > 0.5


def verdict(pair: str, outcome: str, position: str = "A", cand: int = 10, base: int = 10, **kw) -> Verdict:
    score = {"win": 1.0, "loss": 0.0, "tie": 0.5, "unparsed": 0.5}[outcome]
    judge_verdict = {"win": position, "loss": "B" if position == "A" else "A"}.get(outcome, outcome)
    defaults = dict(principles=["helpful"], affirmed=[True], split="train")
    defaults.update(kw)
    return Verdict(pair, pair, "q", "c", "sami", "base", "x " * cand, "y " * base, position, "j",
                   judge_verdict, outcome, score, "raw", candidate_words=cand, baseline_words=base, **defaults)


def test_both_orders_are_averaged_per_pair():
    verdicts = [verdict("p1", "win", "A"), verdict("p1", "loss", "B"), verdict("p2", "win", "A"),
                verdict("p2", "win", "B")]
    pairs = pair_scores(verdicts)
    assert pairs.pair_ids == ["p1", "p2"] and list(pairs.scores) == [0.5, 1.0]
    counts = outcome_counts(verdicts)
    assert counts["judgements"] == 4 and counts["pairs"] == 2 and counts["win"] == 3


def test_summary_counts_ties_and_unparsed_apart_and_breaks_down():
    verdicts = [
        verdict("p1", "win", cand=20, base=10),
        verdict("p2", "win", cand=5, base=10),
        verdict("p3", "loss", cand=20, base=10, principles=["helpful", "harmless"], affirmed=[True, False]),
        verdict("p4", "tie", cand=5, base=10, split="eval", principles=["kind"]),
        verdict("p5", "unparsed", split="eval", principles=["kind"]),
        Verdict.from_dict({**verdict("p6", "unparsed").to_dict(), "error": "HTTP 500 after 5 attempts"}),
    ]
    summary = summarize(verdicts)
    counts = summary["counts"]
    assert (counts["win"], counts["loss"], counts["tie"], counts["unparsed"]) == (2, 1, 1, 2)
    assert counts["failed"] == 1 and counts["parse_failures"] == 1
    assert summary["raw"]["estimate"] == pytest.approx((1 + 1 + 0 + 0.5 + 0.5 + 0.5) / 6)
    assert set(summary["by_principle"]) == {"helpful", "harmless (antithesis)", "kind"}
    assert summary["by_principle"]["kind"]["counts"]["pairs"] == 2
    assert summary["by_split"]["eval"]["counts"]["pairs"] == 2
    assert summary["by_split"]["train"]["raw"]["estimate"] == pytest.approx(2.5 / 4)
    json.dumps(summary, allow_nan=False)  # strict JSON: NaN became null


def test_verdict_roundtrip_keeps_unknown_keys():
    data = {**verdict("p1", "win").to_dict(), "future_field": 3}
    assert Verdict.from_dict(data).meta["future_field"] == 3
