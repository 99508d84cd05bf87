"""Verifiable principles: adherence a program can check, with no judge (docs/evaluation.md).

Each principle of ``sami/principles/builtin/verifiable.yaml`` is an ordinary
:class:`~sami.principles.io.Principle` (definition + antithesis) whose *name* selects a checker:

=======================  ==============================================================
name                     the response follows the principle when ...
=======================  ==============================================================
``max_<N>_words``        it has at most N whitespace-separated words
``min_<M>_words``        it has at least M words
``all_lowercase``        it has letters and none is upper case
``bulleted_list``        at least 2 lines, and at least half of its non-empty lines,
                         start with ``-``, ``*``, ``•`` or ``1.``/``1)``
``includes_word_<w>``    it contains the word ``w`` (whole word, any case)
``no_commas``            it contains no comma (``,`` or ``，``)
``ends_with_question``   its last character, after closing quotes/brackets/markdown, is ``?``
``valid_json``           it parses as a JSON object or array (one ```` ```json ```` fence allowed)
=======================  ==============================================================

A response written under a constitution that *affirms* a principle adheres when the checker
returns True; under its *antithesis*, when it returns False (every antithesis in the file is the
exact complement of its principle). :func:`adherence_report` compares base and trained models.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from scipy import stats

from sami.evaluation.judges import count_words
from sami.principles.io import Principle, PrincipleFileError, PrincipleSet, load_principles

Checker = Callable[[str], bool]


# ---------------------------------------------------------------------------- checkers
def max_words(n: int) -> Checker:
    """At most ``n`` words."""
    return lambda text: count_words(text) <= n


def min_words(m: int) -> Checker:
    """At least ``m`` words."""
    return lambda text: count_words(text) >= m


def all_lowercase(text: str) -> bool:
    """Some letters, none upper case."""
    return any(ch.isalpha() for ch in text) and not any(ch.isupper() for ch in text)


_BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\d{1,3}[.)])\s+\S")


def bulleted_list(text: str) -> bool:
    """At least two bullet lines, and bullets make up at least half of the non-empty lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    bullets = sum(bool(_BULLET.match(line)) for line in lines)
    return bullets >= 2 and bullets * 2 >= len(lines)


def includes_word(word: str) -> Checker:
    """Contains ``word`` as a whole word, in any case."""
    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
    return lambda text: bool(pattern.search(text))


def no_commas(text: str) -> bool:
    """No ASCII or full-width comma."""
    return "," not in text and "，" not in text


def ends_with_question(text: str) -> bool:
    """The last character that is not a closing quote, bracket, markdown mark or space is ``?``."""
    return text.rstrip().rstrip("\"'”’)]*_`").rstrip().endswith(("?", "？"))


_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL | re.IGNORECASE)


def valid_json(text: str) -> bool:
    """A JSON object or array; the whole response, or the whole of one ```json fenced block."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        return False
    return isinstance(value, (dict, list))


FIXED_CHECKERS: dict[str, Checker] = {
    "all_lowercase": all_lowercase,
    "bulleted_list": bulleted_list,
    "no_commas": no_commas,
    "ends_with_question": ends_with_question,
    "valid_json": valid_json,
}
PATTERN_CHECKERS: list[tuple[re.Pattern, Callable[[str], Checker]]] = [
    (re.compile(r"max_(\d+)_words"), lambda n: max_words(int(n))),
    (re.compile(r"min_(\d+)_words"), lambda m: min_words(int(m))),
    (re.compile(r"includes_word_(\w+)"), includes_word),
]


def checker_for(name: str) -> Checker:
    """The checker a principle name selects (see the table in the module docstring)."""
    if name in FIXED_CHECKERS:
        return FIXED_CHECKERS[name]
    for pattern, factory in PATTERN_CHECKERS:
        match = pattern.fullmatch(name)
        if match:
            return factory(match.group(1))
    raise KeyError(
        f"no checker for principle {name!r}; verifiable principle names are {', '.join(FIXED_CHECKERS)}, "
        "max_<N>_words, min_<M>_words or includes_word_<word>"
    )


def is_verifiable(name: str) -> bool:
    try:
        checker_for(name)
    except KeyError:
        return False
    return True


@dataclass(frozen=True)
class VerifiablePrinciple:
    """A principle with its checker: ``check(response)`` is True when the response follows it."""

    principle: Principle
    check: Checker

    @property
    def name(self) -> str:
        return self.principle.name

    def adheres(self, response: str, affirmed: bool = True) -> bool:
        """Whether a response follows the stance it was written under (the principle or its antithesis)."""
        return self.check(response) if affirmed else not self.check(response)


def load_verifiable_principles(path: str | Path = "verifiable") -> list[VerifiablePrinciple]:
    """Load a principle file (default: the built-in ``verifiable``) and attach each principle's checker.

    Raises:
        PrincipleFileError: a principle whose name selects no checker.
    """
    principle_set = load_principles(path)
    return verifiable_from_set(principle_set, source=str(path))


def verifiable_from_set(principle_set: PrincipleSet, source: str = "principles") -> list[VerifiablePrinciple]:
    result = []
    for principle in principle_set:
        try:
            result.append(VerifiablePrinciple(principle, checker_for(principle.name)))
        except KeyError as error:
            raise PrincipleFileError(f"{source}: {error.args[0]}") from None
    return result


# ---------------------------------------------------------------------------- paired statistics
@dataclass(frozen=True)
class PairedRates:
    """Adherence of the same items before and after training.

    ``p_value``: exact McNemar test (a two-sided binomial test on the discordant pairs).
    ``ci_low``/``ci_high``: Newcombe's hybrid score interval for a paired difference (Newcombe 1998,
    method 10), which stays inside [-1, 1] and behaves at rates near 0 or 1.
    """

    n: int
    base_rate: float
    trained_rate: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_rates(base: Mapping[str, bool], trained: Mapping[str, bool], confidence: float = 0.95) -> PairedRates:
    """Compare adherence on the items both sides have (the same query under the same stance)."""
    keys = sorted(set(base) & set(trained))
    n = len(keys)
    if not n:
        nan = float("nan")
        return PairedRates(0, nan, nan, nan, nan, nan, nan)
    both = sum(base[k] and trained[k] for k in keys)
    lost = sum(base[k] and not trained[k] for k in keys)
    gained = sum(trained[k] and not base[k] for k in keys)
    neither = n - both - lost - gained
    p_base, p_trained = (both + lost) / n, (both + gained) / n
    z = stats.norm.ppf(0.5 + confidence / 2)
    low_t, high_t = wilson_interval(both + gained, n, z)
    low_b, high_b = wilson_interval(both + lost, n, z)
    denominator = (both + lost) * (gained + neither) * (both + gained) * (lost + neither)
    concordance = both * neither - lost * gained
    if concordance > 0:  # Newcombe's continuity correction: an all-concordant table keeps a width
        concordance = max(concordance - n / 2, 0)
    phi = concordance / math.sqrt(denominator) if denominator else 0.0
    difference = p_trained - p_base
    below = (p_trained - low_t) ** 2 - 2 * phi * (p_trained - low_t) * (high_b - p_base) + (high_b - p_base) ** 2
    above = (high_t - p_trained) ** 2 - 2 * phi * (high_t - p_trained) * (p_base - low_b) + (p_base - low_b) ** 2
    p_value = stats.binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return PairedRates(
        n, p_base, p_trained, difference,
        max(-1.0, difference - math.sqrt(max(0.0, below))), min(1.0, difference + math.sqrt(max(0.0, above))),
        float(p_value),
    )


# ---------------------------------------------------------------------------- adherence report
@dataclass(frozen=True)
class AdherenceRow:
    """Adherence to one stance (a principle affirmed, or its antithesis) for base and trained.

    ``p_value``: exact McNemar test on the queries both models answered (discordant pairs), with
    Newcombe's interval ``ci_low``/``ci_high`` on the difference; Fisher's exact test (no interval)
    when the two sides share no query ids.
    """

    principle: str
    affirmed: bool
    base_n: int
    base_rate: float
    trained_n: int
    trained_rate: float
    difference: float
    p_value: float
    test: str
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    def to_dict(self) -> dict:
        data = self.__dict__.copy()
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def stance_outcomes(
    records: Iterable[Mapping], principles: Mapping[str, VerifiablePrinciple]
) -> dict[tuple[str, bool], dict[str, bool]]:
    """``{(principle, affirmed): {record key: adheres}}`` for every verifiable stance of every response record."""
    table: dict[tuple[str, bool], dict[str, bool]] = {}
    for index, record in enumerate(records):
        names = record.get("principles") or []
        affirmed = record.get("affirmed") or [True] * len(names)
        key = str(record.get("pair_id") or f"{record.get('query_id', index)}::{record.get('constitution', '')}")
        for name, yes in zip(names, affirmed):
            if name in principles:
                table.setdefault((name, bool(yes)), {})[key] = principles[name].adheres(record["response"], bool(yes))
    return table


def adherence_report(
    base: Iterable[Mapping],
    trained: Iterable[Mapping],
    principles: Sequence[VerifiablePrinciple],
) -> list[AdherenceRow]:
    """Per principle and stance, the fraction of responses that adhere, base vs trained.

    Args:
        base, trained: response records with ``response``, ``principles`` (names of the
            constitution's stances), ``affirmed`` (one bool per name) and an id (``pair_id``, or
            ``query_id`` + ``constitution``) that pairs a base record with a trained one.
        principles: the verifiable principles; stances of other principles are ignored.
    """
    by_name = {p.name: p for p in principles}
    base_table = stance_outcomes(base, by_name)
    trained_table = stance_outcomes(trained, by_name)
    rows = []
    for name in by_name:
        for affirmed in (True, False):
            b = base_table.get((name, affirmed), {})
            t = trained_table.get((name, affirmed), {})
            if not b and not t:
                continue
            base_rate = sum(b.values()) / len(b) if b else float("nan")
            trained_rate = sum(t.values()) / len(t) if t else float("nan")
            extra = {}
            if set(b) & set(t):
                paired = paired_rates(b, t)
                p_value, test = paired.p_value, f"mcnemar-exact on {paired.n} paired"
                extra = {"ci_low": paired.ci_low, "ci_high": paired.ci_high}
            elif b and t:
                table = [[sum(t.values()), len(t) - sum(t.values())], [sum(b.values()), len(b) - sum(b.values())]]
                p_value, test = float(stats.fisher_exact(table).pvalue), "fisher-exact"
            else:
                p_value, test = float("nan"), "one side missing"
            rows.append(
                AdherenceRow(name, affirmed, len(b), base_rate, len(t), trained_rate,
                             trained_rate - base_rate, p_value, test, **extra)
            )
    return rows


def pooled_adherence(
    base: Iterable[Mapping], trained: Iterable[Mapping], principles: Sequence[VerifiablePrinciple], affirmed: bool
) -> PairedRates:
    """Adherence to every affirmed principle (or every antithesis) at once, paired base vs trained."""
    by_name = {p.name: p for p in principles}

    def pooled(records: Iterable[Mapping]) -> dict[str, bool]:
        return {
            f"{name}::{key}": adheres
            for (name, yes), outcomes in stance_outcomes(records, by_name).items() if yes == affirmed
            for key, adheres in outcomes.items()
        }

    return paired_rates(pooled(base), pooled(trained))


def adherence_table(rows: Sequence[AdherenceRow], base_name: str = "base", trained_name: str = "trained") -> str:
    """Rows as a Markdown table."""
    lines = [
        f"| principle | stance | {base_name} | {trained_name} | difference [95% CI] | p |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        stance = "affirmed" if row.affirmed else "antithesis"
        interval = f" [{_signed(row.ci_low)}, {_signed(row.ci_high)}]" if math.isfinite(row.ci_low) else ""
        lines.append(
            f"| {row.principle} | {stance} | {_pct(row.base_rate)} (n={row.base_n}) | "
            f"{_pct(row.trained_rate)} (n={row.trained_n}) | {_signed(row.difference)}{interval} | {_p(row.p_value)} |"
        )
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _signed(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:+.0f} pp"


def _p(x: float) -> str:
    return "–" if not math.isfinite(x) else (f"{x:.3f}" if x >= 0.001 else "<0.001")
