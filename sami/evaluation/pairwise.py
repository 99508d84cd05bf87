"""Pairwise comparisons: candidate vs baseline, randomised A/B positions, one Verdict per judgement.

The paper's protocol: for each held-out (query, constitution), show the judge the
candidate's and the baseline's responses in a random order and ask which follows the
constitution better. Positions are drawn from ``random.Random`` seeded by (seed, pair id), so a
pair gets the same order in every run, whatever the order or subset of the pairs.
``both_orders=True`` judges every pair twice, once per position.

Judging runs in a thread pool with a progress bar (``workers``, capped by the judge's
``max_concurrency``); ``serial=True`` or the environment variable ``SAMI_EVAL_SERIAL=1`` runs
everything in the calling thread, for debugging with breakpoints.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from tqdm.auto import tqdm

from sami.errors import SamiError
from sami.evaluation.judges import OUTCOME_SCORES, Judge, TooManyUnparsedError, count_words, outcome_of
from sami.records import ResponseRecord, Verdict, write_verdicts

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_UNPARSED_FRACTION = 0.5
WARN_UNPARSED_FRACTION = 0.1


@dataclass
class Comparison:
    """One (query, constitution) with the two responses to compare.

    ``pair_id`` defaults to ``query_id``; give distinct ids when a query is evaluated under
    several constitutions. ``principles``/``affirmed`` name the constitution's stances (for the
    per-principle breakdown) and ``split`` is ``"train"``, ``"eval"`` (held-out principles) or
    ``"mixed"``.
    """

    query_id: str
    query: str
    constitution: str
    candidate_response: str
    baseline_response: str
    principles: list[str] = field(default_factory=list)
    affirmed: list[bool] = field(default_factory=list)
    split: str | None = None
    candidate_tokens: int | None = None
    baseline_tokens: int | None = None
    pair_id: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pair_id is None:
            self.pair_id = str(self.query_id)


def serial_requested() -> bool:
    return os.environ.get("SAMI_EVAL_SERIAL", "").strip().lower() in ("1", "true", "yes")


def map_with_progress(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 8,
    serial: bool | None = None,
    progress: bool = True,
    desc: str = "judging",
) -> list[R]:
    """``[fn(x) for x in items]`` in a thread pool with a progress bar; results keep the input order.

    The first exception stops the pool (pending items are cancelled) and is re-raised, so a
    fatal judge error (wrong key, unreachable endpoint) ends the run at once.
    """
    items = list(items)
    if serial is None:
        serial = serial_requested()
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False)
    try:
        if serial or workers <= 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update(1)
            return results
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(fn, item) for item in items]
            for future in futures:
                future.add_done_callback(lambda _: bar.update(1))
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # do not wait for items still retrying
    finally:
        bar.close()


def positions_for(pair_id: str, seed: int, both_orders: bool) -> list[str]:
    """The candidate's position(s) for one pair: a seeded coin flip, or both ``["A", "B"]`` orders."""
    first = random.Random(f"sami-judge:{seed}:{pair_id}").choice("AB")
    if not both_orders:
        return [first]
    return [first, "B" if first == "A" else "A"]


def compare(
    judge: Judge,
    comparisons: Iterable[Comparison],
    *,
    candidate: str = "candidate",
    baseline: str = "baseline",
    seed: int = 0,
    both_orders: bool = False,
    workers: int = 8,
    serial: bool | None = None,
    progress: bool = True,
    max_unparsed_fraction: float | None = DEFAULT_MAX_UNPARSED_FRACTION,
    out_path: str | Path | None = None,
) -> list[Verdict]:
    """Judge every comparison and return one :class:`Verdict` per judgement.

    Args:
        judge: any :class:`~sami.evaluation.judges.Judge`.
        comparisons: the pairs; ``pair_id`` must be unique.
        candidate: name of the model under test (``"sami-iter3"``), recorded in every verdict.
        baseline: name of the reference (``"base"``, ``"instruct"``).
        seed: seeds the A/B positions.
        both_orders: judge each pair in both positions (two verdicts per pair).
        workers: threads; capped by ``judge.max_concurrency``.
        serial: run in the calling thread (default: env ``SAMI_EVAL_SERIAL``).
        progress: show a progress bar.
        max_unparsed_fraction: raise :class:`~sami.evaluation.judges.TooManyUnparsedError` when more
            than this fraction of verdicts is unparsed or failed (``None``: never raise; a
            warning is still given above 10%).
        out_path: if given, the verdicts are written there as JSONL *before* any error about
            unparsed verdicts, so they can be inspected.

    Raises:
        ValueError: duplicate pair ids.
        JudgeError: the judge cannot work (wrong key, unreachable endpoint), or too many unparsed.
    """
    comparisons = list(comparisons)
    seen: set[str] = set()
    for item in comparisons:
        if item.pair_id in seen:
            raise ValueError(f"duplicate pair_id {item.pair_id!r}; give each (query, constitution) its own pair_id")
        seen.add(item.pair_id)  # type: ignore[arg-type]
    tasks = [(item, pos) for item in comparisons for pos in positions_for(item.pair_id, seed, both_orders)]  # type: ignore[arg-type]

    def run(task: tuple[Comparison, str]) -> Verdict:
        item, position = task
        a, b = (
            (item.candidate_response, item.baseline_response)
            if position == "A"
            else (item.baseline_response, item.candidate_response)
        )
        result = judge.judge(item.query, item.constitution, a, b)
        outcome = outcome_of(result.verdict, position)
        prompt_fn = getattr(judge, "prompt", None)
        return Verdict(
            pair_id=item.pair_id,  # type: ignore[arg-type]
            query_id=str(item.query_id),
            query=item.query,
            constitution=item.constitution,
            candidate=candidate,
            baseline=baseline,
            candidate_response=item.candidate_response,
            baseline_response=item.baseline_response,
            candidate_position=position,  # type: ignore[arg-type]
            judge=getattr(judge, "name", type(judge).__name__),
            judge_verdict=result.verdict,
            outcome=outcome,
            score=OUTCOME_SCORES[outcome],
            raw=result.raw,
            error=result.error,
            principles=list(item.principles),
            affirmed=list(item.affirmed),
            split=item.split,
            candidate_words=count_words(item.candidate_response),
            baseline_words=count_words(item.baseline_response),
            candidate_tokens=item.candidate_tokens,
            baseline_tokens=item.baseline_tokens,
            prompt=prompt_fn(item.query, item.constitution, a, b) if callable(prompt_fn) else None,
            meta=dict(item.meta),
        )

    workers = max(1, min(workers, getattr(judge, "max_concurrency", workers)))
    verdicts = map_with_progress(run, tasks, workers=workers, serial=serial, progress=progress,
                                 desc=f"judging {candidate} vs {baseline}")
    if out_path is not None:
        write_verdicts(verdicts, out_path)
    check_unparsed(verdicts, max_unparsed_fraction)
    return verdicts


def check_unparsed(verdicts: Sequence[Verdict], max_fraction: float | None = DEFAULT_MAX_UNPARSED_FRACTION) -> None:
    """Warn when any verdict is unparsed (>10%), raise when more than ``max_fraction`` are."""
    if not verdicts:
        return
    unparsed = [v for v in verdicts if v.outcome == "unparsed"]
    if not unparsed:
        return
    failed = sum(v.error is not None for v in unparsed)
    fraction = len(unparsed) / len(verdicts)
    example = next((v for v in unparsed if v.error is None), unparsed[0])
    shown = example.error if example.error is not None else repr(example.raw[:300])
    message = (
        f"{len(unparsed)} of {len(verdicts)} verdicts ({fraction:.0%}) are unparsed "
        f"({failed} failed requests, {len(unparsed) - failed} answers not in the expected format); "
        f"they score 0.5 and are reported apart. Example: {shown}"
    )
    if max_fraction is not None and fraction > max_fraction:
        raise TooManyUnparsedError(
            message + f". That is above the allowed {max_fraction:.0%}: the judge does not answer in the "
            "expected format (or its endpoint keeps failing). Check the judge model and template, or pass "
            "--allow_unparsed / a higher --max_unparsed_fraction to accept it."
        )
    logger.info(message)
    if fraction > WARN_UNPARSED_FRACTION:
        warnings.warn(message, stacklevel=2)


# ---------------------------------------------------------------------------- matching the two sides
class MismatchedResponsesError(SamiError, ValueError):
    """The two sides of a comparison do not cover the same (query, constitution) pairs."""


def _preview(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def pair_key(record: ResponseRecord) -> tuple[str, str]:
    """(query id, constitution with its whitespace normalised): what matches two sides' responses."""
    return (record.query_id, " ".join(record.constitution.split()))


def comparisons_from_records(
    candidate: Sequence[ResponseRecord],
    baseline: Sequence[ResponseRecord],
    *,
    intersect: bool = False,
    splits: dict[str, str] | None = None,
) -> tuple[list[Comparison], dict]:
    """Match candidate and baseline responses by (query_id, constitution) into comparisons.

    Args:
        candidate, baseline: the responses of each side (:func:`sami.records.read_responses`).
        intersect: compare only the pairs both sides have (and report how many were left out)
            instead of raising on a mismatch.
        splits: principle name -> ``"train"``/``"eval"``; sets each comparison's ``split``
            (``"mixed"`` when its principles come from both).

    Returns:
        ``(comparisons, report)`` where the report counts pairs per side, shared, left out, and
        empty responses.

    Raises:
        MismatchedResponsesError: the sides differ and ``intersect`` is False, or they share nothing, or a
            query id holds different query texts on the two sides (whatever ``intersect`` says).
    """
    sides = {}
    for name, records in (("candidate", candidate), ("baseline", baseline)):
        table: dict[tuple[str, str], ResponseRecord] = {}
        for record in records:
            key = pair_key(record)
            if key in table:
                raise MismatchedResponsesError(
                    f"the {name} responses hold query {key[0]!r} twice under the same constitution; "
                    "each (query, constitution) must appear once"
                )
            table[key] = record
        sides[name] = table
    cand, base = sides["candidate"], sides["baseline"]
    shared = [k for k in cand if k in base]
    only_candidate = [k for k in cand if k not in base]
    only_baseline = [k for k in base if k not in cand]
    report = {
        "candidate_pairs": len(cand),
        "baseline_pairs": len(base),
        "shared_pairs": len(shared),
        "only_candidate": len(only_candidate),
        "only_baseline": len(only_baseline),
    }
    if not shared or ((only_candidate or only_baseline) and not intersect):
        def show(keys):
            return ", ".join(f"{q!r}" for q, _ in keys[:3]) + (" ..." if len(keys) > 3 else "")

        raise MismatchedResponsesError(
            f"the two sides do not answer the same (query, constitution) pairs: candidate {len(cand)}, baseline "
            f"{len(base)}, shared {len(shared)}; only in candidate: {len(only_candidate)} ({show(only_candidate)}); "
            f"only in baseline: {len(only_baseline)} ({show(only_baseline)}). Generate both on the same query set, "
            "split, seed and constitutions" + ("" if not shared else ", or pass --intersect to compare the shared ones")
        )
    different = [k for k in shared if " ".join(cand[k].query.split()) != " ".join(base[k].query.split())]
    if different:
        first = different[0]
        more = len({k[0] for k in different}) - 1
        raise MismatchedResponsesError(
            f"query {first[0]!r} has different texts in the candidate's and the baseline's responses (candidate: "
            f"{_preview(cand[first].query)}; baseline: {_preview(base[first].query)})"
            + (f", and so do {more} more query ids" if more else "")
            + ": the two sides answered different questions under the same id. Generate both sides from the same "
            "query file or set (`sami generate --queries ...`)"
        )
    comparisons = []
    seen_queries: dict[str, int] = {}
    for key in shared:
        c, b = cand[key], base[key]
        principles = list(c.principles or b.principles)
        split = c.split or b.split
        if splits and principles:
            found = {splits.get(p) for p in principles} - {None}
            split = found.pop() if len(found) == 1 else ("mixed" if found else split)
        same_query = seen_queries.get(key[0], 0)  # the k-th constitution of this query
        seen_queries[key[0]] = same_query + 1
        comparisons.append(Comparison(
            query_id=key[0],
            query=c.query,
            constitution=c.constitution,
            candidate_response=c.response,
            baseline_response=b.response,
            principles=principles,
            affirmed=list(c.affirmed or b.affirmed),
            split=split,
            candidate_tokens=c.response_tokens,
            baseline_tokens=b.response_tokens,
            pair_id=key[0] if same_query == 0 else f"{key[0]}#{same_query}",
        ))
    report["empty_candidate_responses"] = sum(not cand[k].response.strip() for k in shared)
    report["empty_baseline_responses"] = sum(not base[k].response.strip() for k in shared)
    return comparisons, report
