import random

import pytest

from sami.constitutions import (
    SCHEMES,
    Constitution,
    DiverseSampler,
    FixedPairSampler,
    NegationsSampler,
    build_sampler,
    query_rng,
    render_constitution,
)
from sami.errors import ConfigError
from sami.principles import Principle, PrincipleSet, load_principles


def principles(n: int, held_out: int = 0) -> PrincipleSet:
    return PrincipleSet(
        tuple(
            Principle(f"p{i}", f"Do thing {i}.", f"Do the opposite of thing {i}.", "eval" if i >= n - held_out else "train")
            for i in range(n)
        )
    )


def test_fixed_pair_first_is_positive_and_others_negate_something():
    sampler = build_sampler("fixed_pair", load_principles("hh"), num_constitutions=2)
    for seed in range(20):
        first, second = sampler.sample(query_rng(seed, "q"))
        assert first.positive and not second.positive
        assert [s.name for s in first.stances] == ["helpful", "harmless"]  # fixed order
        assert [s.name for s in second.stances] == ["helpful", "harmless"]


def test_negation_patterns_cover_all_three_and_both_orders():
    sampler = build_sampler("negations", load_principles("tldr"), num_constitutions=2)
    patterns, orders = set(), set()
    for i in range(200):
        positive, negative = sampler.sample(query_rng(0, f"q{i}"))
        assert positive.positive
        patterns.add(tuple(s.affirmed for s in negative.stances if s.name == "concise")
                     + tuple(s.affirmed for s in negative.stances if s.name == "comprehensive"))
        orders.add(tuple(s.name for s in positive.stances))
    assert patterns == {(False, True), (True, False), (False, False)}
    assert len(orders) == 2


def test_samplers_are_seeded_and_depend_on_query_id():
    sampler = build_sampler("diverse", load_principles("tldr_diverse"), num_constitutions=2)
    assert sampler.sample(query_rng(3, "a")) == sampler.sample(query_rng(3, "a"))
    draws = {tuple(c.key for c in sampler.sample(query_rng(3, f"q{i}"))) for i in range(20)}
    assert len(draws) > 10


def test_diverse_mirrors_flips_and_uses_only_the_split():
    principle_set = load_principles("tldr_diverse")
    train_names = {p.name for p in principle_set.by_split("train")}
    held_out_names = {p.name for p in principle_set.by_split("eval")}
    sampler = build_sampler("diverse", principle_set, 2, split="train")
    for i in range(50):
        c1, c2 = sampler.sample(query_rng(0, f"q{i}"))
        assert {s.name for s in c1.stances} <= train_names
        flips1 = {s.name: s.affirmed for s in c1.stances}
        flips2 = {s.name: s.affirmed for s in c2.stances}
        assert flips1.keys() == flips2.keys() and all(flips1[k] != flips2[k] for k in flips1)
    held = build_sampler("diverse", principle_set, 2, split="eval").sample(random.Random(0))
    assert {s.name for c in held for s in c.stances} <= held_out_names


@pytest.mark.parametrize("scheme", ["fixed_pair", "negations", "diverse"])
def test_more_than_two_constitutions_are_distinct(scheme):
    sampler = build_sampler(scheme, principles(3), num_constitutions=4, principles_per_constitution=3)
    for i in range(20):
        constitutions = sampler.sample(query_rng(1, f"q{i}"))
        assert len(constitutions) == 4
        assert len({c.key for c in constitutions}) == 4


def test_each_scheme_has_its_own_sampler_class():
    classes = {scheme: type(build_sampler(scheme, principles(3))) for scheme in SCHEMES}
    assert classes == {"fixed_pair": FixedPairSampler, "negations": NegationsSampler, "diverse": DiverseSampler}
    assert all(cls.scheme == scheme for scheme, cls in classes.items())
    with pytest.raises(ConfigError, match="the 'negations' scheme can form only 4"):
        build_sampler("negations", principles(2), num_constitutions=5)


def test_bad_counts_name_the_fix():
    with pytest.raises(ValueError, match="at least 2 constitutions"):
        build_sampler("fixed_pair", principles(2), num_constitutions=1)
    with pytest.raises(ValueError, match="only 4 distinct"):
        build_sampler("fixed_pair", principles(2), num_constitutions=5)
    with pytest.raises(ValueError, match="unknown constitution scheme"):
        build_sampler("nope", principles(2))
    with pytest.raises(ValueError, match="no principles with split='eval'"):
        build_sampler("diverse", principles(4), split="eval")
    with pytest.raises(ValueError, match="principles_per_constitution"):
        DiverseSampler(principles(2).principles, 2, principles_per_constitution=3)


def test_render_numbers_stances_and_shuffles_with_rng():
    sampler = build_sampler("fixed_pair", principles(4), num_constitutions=2)
    constitution = sampler.sample(random.Random(0))[0]
    text = render_constitution(constitution)
    assert text.splitlines() == [f"{i + 1}. Do thing {i}." for i in range(4)]
    shuffled = {render_constitution(constitution, random.Random(s)) for s in range(10)}
    assert len(shuffled) > 1
    assert all(sorted(line[3:] for line in t.splitlines()) == sorted(line[3:] for line in text.splitlines()) for t in shuffled)


def test_constitution_round_trips_through_dict():
    constitution = build_sampler("negations", load_principles("tldr"), 2).sample(random.Random(0))[1]
    assert Constitution.from_dict(constitution.to_dict()) == constitution
