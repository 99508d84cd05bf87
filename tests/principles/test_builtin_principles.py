"""The principle files shipped with sami: they load, validate, and read as constitution lines."""

from __future__ import annotations

import re

import pytest

from sami.principles import PrincipleSet, builtin_principle_names, load_principles, save_principles
from sami.principles.io import BUILTIN_DIR, principles_from_dict

PAPER_FILES = {
    # name: (subject every sentence starts with, principle names in file order)
    "hh": ("The assistant", ["helpful", "harmless"]),
    "tldr": ("The summary", ["concise", "comprehensive"]),
}


@pytest.mark.parametrize("name", ["hh", "tldr", "tldr_diverse"])
def test_builtin_file_loads_by_name_and_by_path(name):
    assert name in builtin_principle_names()
    by_name = load_principles(name)
    assert isinstance(by_name, PrincipleSet)
    assert by_name == load_principles(BUILTIN_DIR / f"{name}.yaml")
    assert by_name.task.strip()


@pytest.mark.parametrize("name", ["hh", "tldr", "tldr_diverse"])
def test_builtin_file_round_trips(name, tmp_path):
    principle_set = load_principles(name)
    assert load_principles(save_principles(principle_set, tmp_path / f"{name}.yaml")) == principle_set
    assert load_principles(save_principles(principle_set, tmp_path / f"{name}.json")) == principle_set
    principles_from_dict({"principles": [vars(p) for p in principle_set]}, source=name)  # validates from plain data


@pytest.mark.parametrize("name", ["hh", "tldr"])
def test_paper_pairs(name):
    subject, names = PAPER_FILES[name]
    principle_set = load_principles(name)
    assert [p.name for p in principle_set] == names
    assert all(p.split == "train" for p in principle_set)
    for principle in principle_set:
        assert principle.definition.startswith(subject + " ")
        assert principle.antithesis.startswith(subject + " ")


def test_hh_task_describes_dialogue():
    assert "assistant" in load_principles("hh").task.lower()


def test_diverse_has_15_train_then_5_eval():
    principle_set = load_principles("tldr_diverse")
    assert len(principle_set) == 20
    assert [p.split for p in principle_set] == ["train"] * 15 + ["eval"] * 5
    assert len(principle_set.by_split("train")) == 15
    assert len(principle_set.by_split("eval")) == 5
    assert len({p.name for p in principle_set}) == 20
    assert all(p.definition.startswith("The summary ") for p in principle_set)
    assert all(p.antithesis.startswith("The summary ") for p in principle_set)


def one_sentence(text: str) -> bool:
    """A single sentence ending in a full stop: no line breaks and no '. X' inside."""
    return text.endswith(".") and "\n" not in text and not re.search(r"[.!?] +[A-Z]", text)


@pytest.mark.parametrize("name", ["hh", "tldr", "tldr_diverse"])
def test_each_definition_and_antithesis_is_one_sentence(name):
    for principle in load_principles(name):
        for text in (principle.definition, principle.antithesis):
            assert one_sentence(text), f"{name}/{principle.name}: {text!r}"
            assert 20 <= len(text) <= 200, f"{name}/{principle.name}: {text!r}"
        assert principle.definition.lower() != principle.antithesis.lower()


@pytest.mark.parametrize("name", ["hh", "tldr", "tldr_diverse"])
def test_lines_render_as_a_numbered_constitution(name):
    principle_set = load_principles(name)
    lines = [f"{i}. {p.definition}" for i, p in enumerate(principle_set, 1)]
    lines += [f"{i}. {p.antithesis}" for i, p in enumerate(principle_set, 1)]
    assert all(re.fullmatch(r"\d+\. The (assistant|summary) [^\n]+\.", line) for line in lines)
