"""Templates, verdict parsing and the pairwise protocol with an in-process judge."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from sami.evaluation import (
    Comparison,
    JudgeAuthError,
    JudgeResult,
    TooManyUnparsedError,
    compare,
    map_with_progress,
    parse_verdict,
    read_verdicts,
    render_judge_prompt,
)
from sami.evaluation.pairwise import positions_for
from sami.evaluation.templates import (
    DIALOGUE_JUDGE_TEMPLATE,
    JUDGE_TEMPLATES,
    LOCAL_JUDGE_TEMPLATES,
    SUMMARISATION_JUDGE_TEMPLATE,
    judge_template,
)
from sami.generation.prompts import INSTRUCTIONS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A is better.\nFinal answer: A", "A"),
        ("Final answer: **B**", "B"),
        ("final answer - tie", "tie"),
        ("Final Answer: Response A", "A"),
        ("Final answer: a tie", "tie"),
        ("Final answer: A\n...on reflection...\nFinal answer: B", "B"),
        ("B", "B"),
        (" (A). ", "A"),
        ("Both are fine.", "unparsed"),
        ("Final answer: neither", "unparsed"),
        ("", "unparsed"),
        ("A and B are both good", "unparsed"),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def test_templates_show_the_constitution_and_survive_braces():
    for template in (DIALOGUE_JUDGE_TEMPLATE, SUMMARISATION_JUDGE_TEMPLATE):
        text = render_judge_prompt(template, "Q {x}", "1. Be concise.", "resp {a}", "resp {b}")
        assert "1. Be concise." in text and "Q {x}" in text and "resp {a}" in text and "resp {b}" in text
        assert "Final answer: A" in text
    assert judge_template("summarization") is SUMMARISATION_JUDGE_TEMPLATE
    with pytest.raises(ValueError, match="missing"):
        judge_template("Is {response_a} better?")


def test_every_task_has_judge_templates():
    assert set(JUDGE_TEMPLATES) == set(LOCAL_JUDGE_TEMPLATES) == set(INSTRUCTIONS)
    for task in INSTRUCTIONS:
        assert judge_template(task) is JUDGE_TEMPLATES[task]
        assert judge_template(task, local=True) is LOCAL_JUDGE_TEMPLATES[task]


class PreferLonger:
    """Deterministic judge: the longer response wins; records every call."""

    name = "prefer-longer"
    max_concurrency = 4

    def __init__(self, answer_format: bool = True):
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.answer_format = answer_format

    def judge(self, query, constitution, response_a, response_b):
        with self.lock:
            self.calls.append((response_a, response_b))
        if not self.answer_format:
            return JudgeResult("unparsed", "I cannot decide", None)
        verdict = "A" if len(response_a) > len(response_b) else "B" if len(response_b) > len(response_a) else "tie"
        return JudgeResult(verdict, f"Final answer: {verdict}")

    def stats(self):
        return {"calls": len(self.calls)}


def make_comparisons(n=40):
    return [
        Comparison(f"q{i}", "q", "c", "long candidate answer" if i % 4 else "short", "baseline", ["p"], [True], "train")
        for i in range(n)
    ]


def test_positions_are_seeded_balanced_and_independent_of_order():
    positions = {f"q{i}": positions_for(f"q{i}", seed=0, both_orders=False)[0] for i in range(400)}
    share_a = Counter(positions.values())["A"] / 400
    assert 0.43 < share_a < 0.57
    assert positions_for("q7", 0, False) == positions_for("q7", 0, False)
    assert [positions_for(f"q{i}", 1, False)[0] for i in range(50)] != [positions[f"q{i}"] for i in range(50)]
    assert sorted(positions_for("q7", 0, True)) == ["A", "B"]
    subset = compare(PreferLonger(), make_comparisons(10)[::-1], progress=False)
    assert all(v.candidate_position == positions[v.pair_id] for v in subset)


def test_compare_records_everything(tmp_path):
    verdicts = compare(PreferLonger(), make_comparisons(), candidate="sami-1", baseline="base", seed=0,
                       both_orders=True, workers=4, progress=False, out_path=tmp_path / "v.jsonl")
    assert len(verdicts) == 80
    by_pair = Counter(v.pair_id for v in verdicts)
    assert set(by_pair.values()) == {2}
    for v in verdicts:
        assert v.candidate == "sami-1" and v.baseline == "base" and v.judge == "prefer-longer"
        expected = "win" if v.candidate_response != "short" else "loss"
        assert v.outcome == expected and v.score == (1.0 if expected == "win" else 0.0)
        assert v.candidate_words == len(v.candidate_response.split()) and v.baseline_words == 1
        assert v.principles == ["p"] and v.split == "train" and v.raw.startswith("Final answer")
    assert [v.to_dict() for v in read_verdicts(tmp_path / "v.jsonl")] == [v.to_dict() for v in verdicts]


def test_serial_and_threaded_agree(monkeypatch):
    threaded = compare(PreferLonger(), make_comparisons(), workers=8, progress=False)
    monkeypatch.setenv("SAMI_EVAL_SERIAL", "1")
    judge = PreferLonger()
    serial = compare(judge, make_comparisons(), workers=8, progress=False)
    assert [v.to_dict() for v in serial] == [v.to_dict() for v in threaded]


def test_duplicate_pair_ids_rejected():
    items = make_comparisons(2)
    items[1].pair_id = items[0].pair_id
    with pytest.raises(ValueError, match="duplicate pair_id"):
        compare(PreferLonger(), items, progress=False)


def test_unparsed_threshold():
    with pytest.raises(TooManyUnparsedError, match="40 of 40"):
        compare(PreferLonger(answer_format=False), make_comparisons(), progress=False)
    with pytest.warns(UserWarning, match="40 answers not in the expected format"):
        verdicts = compare(PreferLonger(answer_format=False), make_comparisons(), progress=False,
                           max_unparsed_fraction=1.0)
    assert {v.outcome for v in verdicts} == {"unparsed"} and {v.score for v in verdicts} == {0.5}


def test_map_with_progress_stops_on_first_error():
    started = []

    def work(i):
        started.append(i)
        if i == 3:
            raise JudgeAuthError("wrong key")
        return i * 2

    assert map_with_progress(lambda i: i * 2, range(20), workers=4, progress=False) == [i * 2 for i in range(20)]
    with pytest.raises(JudgeAuthError):
        map_with_progress(work, range(1000), workers=2, progress=False)
    with pytest.raises(JudgeAuthError):
        map_with_progress(work, range(10), serial=True, progress=False)
    assert started[-1] == 3


def test_a_query_id_with_another_question_on_each_side_is_refused():
    from sami.evaluation.pairwise import MismatchedResponsesError, comparisons_from_records
    from sami.records import ResponseRecord

    def side(*queries):
        return [ResponseRecord(f"q{i}", text, "1. Be brief.", f"answer {i}") for i, text in enumerate(queries)]

    candidate = side("What is 2+2?", "Name a colour.", "Say hi.")
    comparisons, _ = comparisons_from_records(candidate, side("What is  2+2?\n", "Name a colour.", "Say hi."))
    assert len(comparisons) == 3  # whitespace aside, the same questions
    other = side("What is 2+2?", "Name a fruit.", "Say bye.")
    for intersect in (False, True):
        with pytest.raises(MismatchedResponsesError, match=r"query 'q1' has different texts .*candidate: 'Name a "
                           r"colour.'; baseline: 'Name a fruit.'\), and so do 1 more query ids"):
            comparisons_from_records(candidate, other, intersect=intersect)
