"""Evaluation: judges, pairwise comparisons, win rates and verifiable principles (the paper's evaluation protocol).

>>> from sami.evaluation import APIJudge, Comparison, compare, summarize  # doctest: +SKIP
>>> judge = APIJudge("gpt-4o-mini", cache_dir="judge_cache")  # doctest: +SKIP
>>> verdicts = compare(judge, comparisons, candidate="sami-iter3", baseline="base")  # doctest: +SKIP
>>> summarize(verdicts)["lc"]["estimate"]  # doctest: +SKIP
"""

from sami.evaluation.api_judge import APIJudge
from sami.evaluation.judges import (
    OUTCOME_SCORES,
    Judge,
    JudgeAuthError,
    JudgeError,
    JudgeResult,
    JudgeUnreachableError,
    TooManyUnparsedError,
    count_words,
)
from sami.evaluation.pairwise import (
    Comparison,
    MismatchedResponsesError,
    check_unparsed,
    compare,
    comparisons_from_records,
    map_with_progress,
)
from sami.evaluation.templates import (
    DIALOGUE_JUDGE_TEMPLATE,
    SUMMARISATION_JUDGE_TEMPLATE,
    parse_verdict,
    render_judge_prompt,
)
from sami.evaluation.verifiable import (
    VerifiablePrinciple,
    adherence_report,
    adherence_table,
    checker_for,
    is_verifiable,
    load_verifiable_principles,
)
from sami.evaluation.winrates import (
    WinRate,
    balanced_win_rate,
    breakdown,
    length_controlled_win_rate,
    pair_scores,
    raw_win_rate,
    summarize,
    win_rates,
)
from sami.records import Verdict, read_verdicts, write_verdicts


def __getattr__(name: str):
    if name == "LocalJudge":  # imports torch; loaded on first use so API-only evaluation starts fast
        from sami.evaluation.local_judge import LocalJudge

        return LocalJudge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APIJudge",
    "Comparison",
    "DIALOGUE_JUDGE_TEMPLATE",
    "Judge",
    "JudgeAuthError",
    "JudgeError",
    "JudgeResult",
    "JudgeUnreachableError",
    "LocalJudge",
    "MismatchedResponsesError",
    "OUTCOME_SCORES",
    "SUMMARISATION_JUDGE_TEMPLATE",
    "TooManyUnparsedError",
    "Verdict",
    "VerifiablePrinciple",
    "WinRate",
    "adherence_report",
    "adherence_table",
    "balanced_win_rate",
    "breakdown",
    "check_unparsed",
    "checker_for",
    "compare",
    "comparisons_from_records",
    "count_words",
    "is_verifiable",
    "length_controlled_win_rate",
    "load_verifiable_principles",
    "map_with_progress",
    "pair_scores",
    "parse_verdict",
    "raw_win_rate",
    "read_verdicts",
    "render_judge_prompt",
    "summarize",
    "win_rates",
    "write_verdicts",
]
