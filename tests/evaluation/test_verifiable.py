"""Verifiable principles: checkers, the principle file, and the adherence report."""

from __future__ import annotations

import pytest

from sami.evaluation.verifiable import (
    adherence_report,
    adherence_table,
    all_lowercase,
    bulleted_list,
    checker_for,
    ends_with_question,
    includes_word,
    load_verifiable_principles,
    max_words,
    min_words,
    no_commas,
    valid_json,
)
from sami.principles.io import PrincipleFileError, load_principles


def test_word_counts():
    assert max_words(3)("one two three") and not max_words(3)("one two three four")
    assert min_words(2)("one  two\n") and not min_words(2)("one")
    assert checker_for("max_50_words")("word " * 50) and not checker_for("max_50_words")("word " * 51)
    assert checker_for("min_120_words")("w " * 120)


@pytest.mark.parametrize(
    "checker, yes, no",
    [
        (all_lowercase, ["hello there, friend.", "ok 123"], ["Hello", "HELLO", "123", ""]),
        (bulleted_list, ["- a\n- b", "Here:\n* one\n* two\n• three", "1. x\n2) y"],
         ["- only one", "a\nb\nc\n- d\n- e", "plain text", "-a\n-b"]),
        (includes_word("indeed"), ["Indeed it is.", "it is, indeed!"], ["indeedy", "deed", ""]),
        (no_commas, ["no commas here", ""], ["one, two", "全角，逗号"]),
        (ends_with_question, ["Right?", "Is it? ", '"Really?"', "**Why?**", "why？"], ["Yes.", "? no", ""]),
        (valid_json, ['{"a": 1}', " [1, 2] ", '```json\n{"a": [1]}\n```'],
         ["42", '"text"', "{'a': 1}", 'Here: {"a": 1}', ""]),
    ],
)
def test_checkers(checker, yes, no):
    assert all(checker(text) for text in yes), [t for t in yes if not checker(t)]
    assert not any(checker(text) for text in no), [t for t in no if checker(t)]


def test_builtin_file_loads_with_a_checker_for_every_principle():
    principles = load_verifiable_principles()
    names = [p.name for p in principles]
    assert len(names) == 8 and len(set(names)) == 8
    assert {p.principle.split for p in principles} == {"train", "eval"}
    for p in principles:  # every antithesis is written, and is the checker's complement
        assert p.principle.antithesis and p.adheres("x", affirmed=False) == (not p.check("x"))
    # the train split has no pair that contradicts itself (both max and min length)
    train = {p.name for p in principles if p.principle.split == "train"}
    assert not ({n for n in train if n.startswith("max_")} and {n for n in train if n.startswith("min_")})
    assert load_principles("verifiable").get("valid_json").split == "eval"


def test_unknown_name_is_a_clear_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("principles:\n  - {name: poetic, definition: Rhymes., antithesis: Does not rhyme.}\n")
    with pytest.raises(PrincipleFileError, match="no checker for principle 'poetic'"):
        load_verifiable_principles(path)


def test_adherence_report_base_vs_trained():
    principles = load_verifiable_principles()
    base, trained = [], []
    for i in range(20):
        short, long = "a short reply.", "word " * 80
        base.append({"query_id": f"q{i}", "constitution": "c", "response": long,
                     "principles": ["max_50_words", "no_commas"], "affirmed": [True, True]})
        trained.append({"query_id": f"q{i}", "constitution": "c", "response": short if i < 16 else long,
                        "principles": ["max_50_words", "no_commas"], "affirmed": [True, True]})
        base.append({"query_id": f"n{i}", "constitution": "c", "response": short,
                     "principles": ["max_50_words", "poetic"], "affirmed": [False, True]})
        trained.append({"query_id": f"n{i}", "constitution": "c", "response": long,
                        "principles": ["max_50_words", "poetic"], "affirmed": [False, True]})
    rows = {(r.principle, r.affirmed): r for r in adherence_report(base, trained, principles)}
    assert set(rows) == {("max_50_words", True), ("max_50_words", False), ("no_commas", True)}
    affirmed = rows[("max_50_words", True)]
    assert (affirmed.base_rate, affirmed.trained_rate, affirmed.base_n) == (0.0, 0.8, 20)
    assert affirmed.test.startswith("mcnemar") and affirmed.p_value == pytest.approx(2 * 0.5**16)
    negated = rows[("max_50_words", False)]
    assert (negated.base_rate, negated.trained_rate) == (0.0, 1.0)
    assert rows[("no_commas", True)].difference == 0.0 and rows[("no_commas", True)].p_value == 1.0
    table = adherence_table(list(rows.values()))
    assert affirmed.ci_low < 0.8 < affirmed.ci_high <= 1.0
    assert f"| max_50_words | affirmed | 0% (n=20) | 80% (n=20) | +80 pp [+{100 * affirmed.ci_low:.0f} pp, " in table
    assert table.splitlines()[1 + 1].endswith("| <0.001 |")


PLAIN_PARAGRAPHS = {"bulleted_list": "The response is written as plain paragraphs, without any bulleted or numbered list."}


@pytest.mark.parametrize("name, train, reworded", [("verifiable_small", ["max_50_words", "bulleted_list"], {}),
                                                   ("verifiable_bullets", ["bulleted_list"], {}),
                                                   ("verifiable_paragraphs", ["bulleted_list"], PLAIN_PARAGRAPHS)])
def test_verifiable_subsets_train_on_the_principles_a_small_model_follows(name, train, reworded):
    full, small = load_principles("verifiable"), load_principles(name)
    expected = [(p.name, p.definition, reworded.get(p.name, p.antithesis)) for p in full]
    assert [(p.name, p.definition, p.antithesis) for p in small] == expected
    assert [p.name for p in small.by_split("train")] == train
    assert len(load_verifiable_principles(name)) == len(full)  # every name has a checker
