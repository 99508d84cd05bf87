"""What training did to verifiable principles: adherence per iteration, a coherence guard, an example.

``sami run`` with verifiable principles (docs/effect.md) records, for each iteration's greedy
held-out responses, how often they follow the stance their constitution asked for
(:func:`iteration_adherence`), and ends with the base-vs-final comparison
(:func:`effect_summary`): paired adherence with an exact test, and one query answered by both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sami.evaluation.verifiable import PairedRates, VerifiablePrinciple, pooled_adherence, stance_outcomes
from sami.records import GenerationRecord, read_generations
from sami.run_folder import RunFolder


def repetition_rate(text: str, n: int = 4) -> float:
    """The fraction of a response's word n-grams that repeat an earlier one (0: none; near 1: a loop)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def responses_of(records: Sequence[GenerationRecord]) -> list[dict]:
    """The scored (not dropped) records' responses, flat, as dicts the adherence functions read."""
    return [r.to_dict() for record in records if record.dropped is None for r in record.response_records()]


def iteration_adherence(records: Sequence[GenerationRecord], principles: Sequence[VerifiablePrinciple]) -> dict:
    """``adherence/affirmed``, ``adherence/antithesis`` and ``repetition`` of one model's held-out responses."""
    flat = responses_of(records)
    table = stance_outcomes(flat, {p.name: p for p in principles})
    metrics = {}
    for key, affirmed in (("adherence/affirmed", True), ("adherence/antithesis", False)):
        outcomes = [x for (_, yes), found in table.items() if yes == affirmed for x in found.values()]
        if outcomes:
            metrics[key] = sum(outcomes) / len(outcomes)
    metrics["repetition"] = sum(repetition_rate(r["response"]) for r in flat) / max(1, len(flat))
    return metrics


def base_vs_trained(
    base: Sequence[GenerationRecord], trained: Sequence[GenerationRecord], principles: Sequence[VerifiablePrinciple]
) -> dict[str, PairedRates]:
    """Pooled paired adherence to the affirmed principles and to their antitheses."""
    flat_base, flat_trained = responses_of(base), responses_of(trained)
    return {
        stance: pooled_adherence(flat_base, flat_trained, principles, affirmed)
        for stance, affirmed in (("affirmed", True), ("antithesis", False))
    }


def find_example(
    base: Sequence[GenerationRecord], trained: Sequence[GenerationRecord], principles: Sequence[VerifiablePrinciple]
) -> dict | None:
    """A held-out query whose affirmed-principle response the base model got wrong and training got right.

    Prefers the principle whose adherence rose most, then the pair with the fewest repeated 4-grams, then
    the shortest (readable on a terminal). ``None`` when no response changed that way.
    """
    by_name = {p.name: p for p in principles}
    base_flat = {(r["query_id"], r["constitution"]): r for r in responses_of(base)}
    gains: dict[str, list[tuple[dict, dict]]] = {}
    for after in responses_of(trained):
        before = base_flat.get((after["query_id"], after["constitution"]))
        if before is None:
            continue
        for name, affirmed in zip(after["principles"], after["affirmed"]):
            check = by_name.get(name)
            if check and affirmed and check.adheres(after["response"]) and not check.adheres(before["response"]):
                gains.setdefault(name, []).append((before, after))
    if not gains:
        return None
    name = max(gains, key=lambda n: len(gains[n]))
    before, after = min(gains[name], key=lambda pair: (
        round(repetition_rate(pair[0]["response"]) + repetition_rate(pair[1]["response"]), 2),
        len(pair[0]["response"]) + len(pair[1]["response"]),
    ))
    return {"principle": name, "query": after["query"], "constitution": after["constitution"],
            "base": before["response"], "trained": after["response"]}


@dataclass
class PairSignal:
    """What separates a principle's affirmed response from its negated one, over the queries that have both.

    SAMI's loss rewards whatever tells a query's responses apart; on training data it amplifies
    this difference, in whichever direction the sampled pairs show it.

    Attributes:
        pairs: queries with the principle affirmed in one constitution and negated in another.
        toward: pairs whose affirmed response shows the checked behaviour and whose negated one does not.
        away: the reverse: the behaviour appears only under the negation.
        words_affirmed, words_negated: mean words per response under each stance.
    """

    principle: str
    pairs: int = 0
    toward: int = 0
    away: int = 0
    words_affirmed: float = 0.0
    words_negated: float = 0.0


def pair_signal(records: Sequence[GenerationRecord], principles: Sequence[VerifiablePrinciple]) -> list[PairSignal]:
    """Per verifiable principle, how its affirmed and negated responses differ within a query (kept records only).

    A constitution counts for a principle when its only stance is that principle (``scheme: diverse``,
    ``principles_per_constitution: 1``); a query pairs its first affirmed and first negated such response.
    """
    by_name = {p.name: p for p in principles}
    signals = {name: PairSignal(name) for name in by_name}
    for record in records:
        if record.dropped is not None:
            continue
        found: dict[tuple[str, bool], str] = {}
        for constitution, response in zip(record.constitutions, record.responses):
            stances = constitution.get("stances", [])
            if len(stances) == 1 and stances[0]["name"] in signals:
                found.setdefault((stances[0]["name"], bool(stances[0]["affirmed"])), response or "")
        for name, signal in signals.items():
            if (name, True) not in found or (name, False) not in found:
                continue
            affirmed, negated = found[name, True], found[name, False]
            shows = by_name[name].check
            signal.pairs += 1
            signal.toward += shows(affirmed) and not shows(negated)
            signal.away += shows(negated) and not shows(affirmed)
            signal.words_affirmed += len(affirmed.split())  # a sum until the mean below
            signal.words_negated += len(negated.split())
    found_pairs = [s for s in signals.values() if s.pairs]
    for signal in found_pairs:
        signal.words_affirmed /= signal.pairs
        signal.words_negated /= signal.pairs
    return found_pairs


def format_rates(label: str, rates: PairedRates) -> str:
    """One line: base -> trained adherence, the change with its interval, and the exact p-value."""
    if not rates.n:
        return f"{label}: no paired responses"
    p = f"{rates.p_value:.2g}" if rates.p_value >= 1e-4 else "<1e-4"
    return (
        f"{label}: {100 * rates.base_rate:.0f}% -> {100 * rates.trained_rate:.0f}% "
        f"({100 * rates.difference:+.0f} points, 95% CI [{100 * rates.ci_low:+.0f}, {100 * rates.ci_high:+.0f}], "
        f"exact McNemar p = {p}, {rates.n} paired responses)"
    )


def effect_summary(run: RunFolder, principles: Sequence[VerifiablePrinciple], max_chars: int = 400) -> str:
    """Base model vs the final iteration on the run's held-out queries: adherence and one example."""
    final = max(t for t, folder in run.iterations().items() if folder.eval_generations.exists())
    base = read_generations(run.iteration(0).eval_generations)
    trained = read_generations(run.iteration(final).eval_generations)
    rates = base_vs_trained(base, trained, principles)
    lines = [
        f"Verifiable principles, held-out queries, base model vs iteration {final}:",
        "  " + format_rates("adherence to the affirmed principles", rates["affirmed"]),
        "  " + format_rates("adherence to their antitheses", rates["antithesis"]),
    ]
    example = find_example(base, trained, principles)
    if example is not None:
        lines += [
            "",
            f"Example ({example['principle']}, affirmed):",
            f"  query: {_clip(example['query'], max_chars)}",
            f"  constitution: {_clip(example['constitution'], max_chars)}",
            f"  base model: {_clip(example['base'], max_chars)}",
            f"  iteration {final}: {_clip(example['trained'], max_chars)}",
        ]
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

