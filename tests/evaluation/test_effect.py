"""Paired adherence statistics, the repetition guard, and the base-vs-final summary of a run."""

import math

import pytest

from sami.evaluation.effect import (
    base_vs_trained, effect_summary, find_example, iteration_adherence, pair_signal, repetition_rate,
)
from sami.evaluation.verifiable import load_verifiable_principles, paired_rates, pooled_adherence
from sami.jsonl import write_jsonl
from sami.records import GenerationRecord
from sami.run_folder import RunFolder

SHORT, LONG = "a short reply.", " ".join(["word"] * 80)


def outcomes(pattern: str) -> dict[str, bool]:
    return {f"k{i}": c == "1" for i, c in enumerate(pattern)}


def test_paired_rates_counts_discordant_pairs_only():
    rates = paired_rates(outcomes("1100" * 5), outcomes("1111" * 5))  # 10 gained, none lost, 10 kept
    assert (rates.n, rates.base_rate, rates.trained_rate, rates.difference) == (20, 0.5, 1.0, 0.5)
    assert rates.p_value == pytest.approx(2 * 0.5**10)
    assert 0 < rates.ci_low < 0.5 < rates.ci_high <= 1.0
    unchanged = paired_rates(outcomes("10" * 10), outcomes("10" * 10))
    assert unchanged.difference == 0 and unchanged.p_value == 1.0 and unchanged.ci_low < 0 < unchanged.ci_high


def test_paired_interval_matches_wald_for_large_samples():
    n, both, lost, gained = 4000, 1000, 400, 800
    base = {f"k{i}": i < both + lost for i in range(n)}
    trained = {f"k{i}": i < both or both + lost <= i < both + lost + gained for i in range(n)}
    rates = paired_rates(base, trained)
    difference = (gained - lost) / n
    se = math.sqrt((gained + lost) / n - difference**2) / math.sqrt(n)
    assert rates.difference == pytest.approx(difference)
    assert rates.ci_low == pytest.approx(difference - 1.96 * se, abs=2e-3)
    assert rates.ci_high == pytest.approx(difference + 1.96 * se, abs=2e-3)


def test_paired_rates_only_pairs_shared_items():
    rates = paired_rates({"a": True, "b": False}, {"b": True, "c": True})
    assert rates.n == 1 and rates.difference == 1.0
    assert paired_rates({}, {"a": True}).n == 0


def test_repetition_rate_flags_loops():
    assert repetition_rate("the cat sat on the mat today") == 0.0
    assert repetition_rate("A: A: A: A: A: A: A: A: A: A:") > 0.8
    assert repetition_rate("too short") == 0.0


def record(query_id: str, affirmed_response: str, negated_response: str) -> GenerationRecord:
    """One held-out record: max_50_words affirmed in constitution 0, its antithesis in constitution 1."""
    return GenerationRecord(
        query_id=query_id, query=f"question {query_id}", task="dialogue",
        template={"task": "dialogue", "kind": "chat", "chain_of_thought": False},
        constitutions=[
            {"stances": [{"name": "max_50_words", "affirmed": True, "text": "brief"}], "text": "1. brief"},
            {"stances": [{"name": "max_50_words", "affirmed": False, "text": "long"}], "text": "1. long"},
        ],
        responses=[affirmed_response, negated_response], response_tokens=[3, 80],
    )


def test_base_vs_trained_pools_stances_and_finds_an_example():
    principles = load_verifiable_principles()
    base = [record(f"q{i}", LONG, LONG) for i in range(12)]
    trained = [record(f"q{i}", SHORT if i < 9 else LONG, LONG) for i in range(12)]
    rates = base_vs_trained(base, trained, principles)
    assert (rates["affirmed"].base_rate, rates["affirmed"].trained_rate) == (0.0, 0.75)
    assert rates["affirmed"].p_value == pytest.approx(2 * 0.5**9)
    assert rates["antithesis"].difference == 0.0 and rates["antithesis"].base_rate == 1.0
    example = find_example(base, trained, principles)
    assert example["principle"] == "max_50_words" and example["trained"] == SHORT and example["base"] == LONG
    assert find_example(base, base, principles) is None
    assert iteration_adherence(trained, principles) == pytest.approx(
        {"adherence/affirmed": 0.75, "adherence/antithesis": 1.0, "repetition": 15 / 24 * repetition_rate(LONG)}
    )  # 24 responses: 9 short ones, 15 loops of "word"


def test_pooled_adherence_keeps_principles_apart():
    principles = load_verifiable_principles()
    flat = [{"query_id": "q", "constitution": "c", "response": SHORT, "principles": ["max_50_words", "no_commas"],
             "affirmed": [True, True]}]
    assert pooled_adherence(flat, flat, principles, True).n == 2
    assert pooled_adherence(flat, flat, principles, False).n == 0


def test_effect_summary_reads_the_run(tmp_path):
    run = RunFolder(tmp_path)
    write_jsonl([record(f"q{i}", LONG, LONG).to_dict() for i in range(10)], run.iteration(0).eval_generations)
    write_jsonl([record(f"q{i}", SHORT, LONG).to_dict() for i in range(10)], run.iteration(2).eval_generations)
    text = effect_summary(run, load_verifiable_principles())
    assert "base model vs iteration 2" in text
    assert "adherence to the affirmed principles: 0% -> 100% (+100 points" in text
    assert "exact McNemar p = 0.002" in text
    assert f"iteration 2: {SHORT}" in text


def test_pair_signal_counts_pairs_toward_and_away_from_the_principle():
    principles = load_verifiable_principles()
    records = [record("q0", SHORT, LONG), record("q1", SHORT, LONG), record("q2", LONG, SHORT),  # 2 toward, 1 away
               record("q3", SHORT, SHORT), record("q4", LONG, LONG)]  # no difference
    dropped = record("q5", SHORT, LONG)
    dropped.dropped = "identical"
    two_stances = record("q6", SHORT, LONG)
    two_stances.constitutions[0]["stances"].append({"name": "no_commas", "affirmed": True, "text": "no commas"})
    (signal,) = pair_signal([*records, dropped, two_stances], principles)
    assert (signal.principle, signal.pairs, signal.toward, signal.away) == ("max_50_words", 5, 2, 1)
    assert signal.words_affirmed == pytest.approx((3 * 3 + 2 * 80) / 5)
    assert signal.words_negated == pytest.approx((3 * 80 + 2 * 3) / 5)
