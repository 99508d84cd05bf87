"""Drop rules for generated responses, each with a named reason (the paper's method).

Nothing is dropped silently: every record keeps its ``dropped`` reason in the generations
file (``no_answer_marker``, ``empty_response``, ``identical_responses``, ``placeholder_text``,
``truncated_response``, ``truncated_positive``) and :class:`FilterReport` counts them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sami.errors import ConfigError


@dataclass(frozen=True)
class FilterConfig:
    """Which rules apply.

    Args:
        placeholders: substrings that mark template text the model failed to fill in (case-insensitive).
            The paper's code dropped responses containing ``"[insert"`` or ``"]"``; a lone ``"]"``
            also drops any code or citation, so the default keeps only the placeholder patterns.
        drop_identical: drop a query whose C responses are not all distinct (no contrast to learn).
        drop_truncated: ``"positive"`` drops a query whose all-affirmed constitution's response hit
            ``max_new_tokens`` (the paper's rule), ``"any"`` any truncated response, ``"none"`` keeps all.
    """

    placeholders: tuple[str, ...] = ("[insert", "[your ", "[name]")
    drop_identical: bool = True
    drop_truncated: str = "positive"

    def __post_init__(self) -> None:
        if self.drop_truncated not in ("positive", "any", "none"):
            raise ConfigError(f"drop_truncated={self.drop_truncated!r}: choose 'positive', 'any' or 'none'")


def drop_reason(record: dict, config: FilterConfig) -> str | None:
    """The first rule a generated record breaks, or ``None`` to keep it."""
    responses = record["responses"]
    if any(answer is None for answer in responses):
        return "no_answer_marker"
    if any(not answer.strip() for answer in responses):
        return "empty_response"
    if config.drop_identical and len({answer.strip() for answer in responses}) < len(responses):
        return "identical_responses"
    lowered = [answer.lower() for answer in responses]
    if any(p.lower() in answer for p in config.placeholders for answer in lowered):
        return "placeholder_text"
    truncated = [reason == "length" for reason in record["finish_reasons"]]
    if config.drop_truncated == "any" and any(truncated):
        return "truncated_response"
    if config.drop_truncated == "positive":
        positive = [all(s["affirmed"] for s in c["stances"]) for c in record["constitutions"]]
        if any(t and p for t, p in zip(truncated, positive)):
            return "truncated_positive"
    return None


@dataclass
class FilterReport:
    """How many records were generated, kept and dropped (per reason)."""

    total: int = 0
    dropped: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.total - sum(self.dropped.values())

    def add(self, reason: str | None) -> None:
        self.total += 1
        if reason is not None:
            self.dropped[reason] += 1

    @classmethod
    def from_records(cls, records: list[dict]) -> FilterReport:
        report = cls()
        for record in records:
            report.add(record.get("dropped"))
        return report

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}

    def summary(self) -> str:
        parts = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.dropped.items())) or "none"
        return f"kept {self.kept} of {self.total} queries (dropped: {parts})"


EVAL_FILTERS = FilterConfig(placeholders=(), drop_identical=False, drop_truncated="none")
"""Held-out responses are generated greedily (the paper's evaluation), so they differ only through the
constitution, and are scored and judged as generated: only empty responses (no log-probability) are dropped."""
