"""A synthetic run directory in the layout `sami run` + `sami evaluate --run_dir` write."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sami.evaluation.verifiable import adherence_report, load_verifiable_principles
from sami.evaluation.winrates import summarize
from sami.principles.io import Principle, PrincipleSet, save_principles
from sami.records import Verdict, write_verdicts


def _verdicts(iteration: int, baseline: str, p_win: float, rng: random.Random, n: int = 40) -> list[Verdict]:
    out = []
    for i in range(n):
        principle = ["helpful", "harmless"][i % 2]
        r = rng.random()
        outcome = "win" if r < p_win else "tie" if r < p_win + 0.05 else "unparsed" if r < p_win + 0.08 else "loss"
        position = rng.choice("AB")
        judge_verdict = {"win": position, "loss": "B" if position == "A" else "A"}.get(outcome, outcome)
        cand_words, base_words = rng.randint(20, 90), rng.randint(20, 80)
        out.append(Verdict(
            pair_id=f"q{i}", query_id=f"q{i}", query=f"How do I do thing {i}?",
            constitution="1. The assistant is helpful.\n2. The assistant is harmless.",
            candidate=f"sami-iter{iteration}", baseline=baseline,
            candidate_response="candidate " * cand_words, baseline_response="baseline " * base_words,
            candidate_position=position, judge="api:fake", judge_verdict=judge_verdict, outcome=outcome,
            score={"win": 1.0, "loss": 0.0, "tie": 0.5, "unparsed": 0.5}[outcome],
            raw=f"Reasons.\nFinal answer: {judge_verdict}", principles=[principle], affirmed=[True],
            split="train" if principle == "helpful" else "eval",
            candidate_words=cand_words, baseline_words=base_words,
        ))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = random.Random(0)
    run = tmp_path / "demo-run"
    run.mkdir()
    metrics = [
        {"iteration": t, "mi/bound": mi, "mi/bound_rows": mi - 0.03, "mi/bound_cols": mi + 0.03,
         "response_length": length, "num_constitutions": 2}
        for t, mi, length in [(0, 0.12, 61.0), (1, 0.25, 66.0), (2, 0.38, 70.5), (3, 0.46, 74.0)]
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    save_principles(PrincipleSet((Principle("helpful", "The assistant is helpful.", "The assistant is unhelpful."),
                                  Principle("harmless", "The assistant is harmless.", "The assistant is harmful.",
                                            "eval"))), run / "principles.yaml")
    principles = load_verifiable_principles()
    for t, (p_base, p_instruct) in enumerate([(0.5, 0.35), (0.6, 0.45), (0.7, 0.55)], start=1):
        folder = run / f"iter_{t}"
        folder.mkdir()
        for baseline, p in (("base", p_base), ("instruct", p_instruct)):
            verdicts = _verdicts(t, baseline, p, rng)
            write_verdicts(verdicts, folder / f"verdicts_vs_{baseline}.jsonl")
            summary = {**summarize(verdicts), "judge_stats": {"cache_hits": 3, "retries": 1}}
            (folder / f"summary_vs_{baseline}.json").write_text(json.dumps(summary))
        base_records, trained_records = [], []
        for i in range(30):
            names = ["max_50_words", "bulleted_list"]
            base_records.append({"pair_id": f"v{i}", "response": "word " * 70, "principles": names,
                                 "affirmed": [True, True]})
            trained = "- short\n- list" if rng.random() < 0.2 * t else "word " * 30
            trained_records.append({"pair_id": f"v{i}", "response": trained, "principles": names,
                                    "affirmed": [True, True]})
        rows = adherence_report(base_records, trained_records, principles)
        (folder / "adherence_vs_base.json").write_text(json.dumps(
            {"base_name": "base", "trained_name": f"sami-iter{t}", "rows": [r.to_dict() for r in rows]}))
    return run
