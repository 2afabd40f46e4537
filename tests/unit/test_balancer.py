"""Ordering a group's deployments: smooth weighted round-robin and the strategies on top."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable

import pytest

from seekport.gateway.routing.balancer import STRATEGIES, Balancer, Candidate, Ewma


def cands(*weights: float) -> list[Candidate]:
    return [Candidate(index=i, weight=w) for i, w in enumerate(weights)]


def firsts(
    b: Balancer, candidates: list[Candidate], n: int, region: str | None = None
) -> list[int]:
    """The index tried first in each of ``n`` orders."""
    return [b.order(candidates, region)[0].index for _ in range(n)]


def indices(order: list[Candidate]) -> list[int]:
    return [c.index for c in order]


def seq_rng(values: list[float]) -> Callable[[], float]:
    it = iter(values)

    def rng() -> float:
        return next(it)

    return rng


def test_weighted_round_robin_spreads_first_picks_exactly_by_weight() -> None:
    b = Balancer("weighted_round_robin")
    picks = firsts(b, cands(3, 1), 400)
    assert Counter(picks) == {0: 300, 1: 100}


def test_weighted_round_robin_is_smooth() -> None:
    """No bursts: the weight-1 deployment is never first twice in a row, the weight-3 one
    never more than three times in a row."""
    b = Balancer("weighted_round_robin")
    picks = firsts(b, cands(3, 1), 400)
    assert all(not (x == 1 and y == 1) for x, y in itertools.pairwise(picks))
    assert "0000" not in "".join(map(str, picks))


def test_weighted_round_robin_with_three_weights() -> None:
    b = Balancer("weighted_round_robin")
    picks = firsts(b, cands(5, 1, 1), 700)
    assert Counter(picks) == {0: 500, 1: 100, 2: 100}
    for window in range(0, 700, 7):  # every 7 picks hold the full share
        assert Counter(picks[window : window + 7]) == {0: 5, 1: 1, 2: 1}


def test_equal_weights_take_turns() -> None:
    b = Balancer("weighted_round_robin")
    assert firsts(b, cands(1, 1, 1), 6) == [0, 1, 2, 0, 1, 2]


def test_a_weight_zero_deployment_is_never_picked() -> None:
    for strategy in STRATEGIES:
        b = Balancer(strategy)
        group = [
            Candidate(0, 0.0, {"region": "eu"}),
            Candidate(1, 1.0, {"region": "us"}),
            Candidate(2, 2.0),
        ]
        for _ in range(50):
            order = b.order(group, "eu")
            assert 0 not in indices(order), strategy


def test_no_live_deployment_gives_an_empty_order() -> None:
    assert Balancer("weighted_round_robin").order(cands(0, 0)) == []
    assert Balancer("least_inflight").order([]) == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_order_holds_every_live_candidate_once(strategy: str) -> None:
    b = Balancer(strategy)
    group = [
        Candidate(0, 2.0, {"region": "eu"}, in_flight=3, ttft=0.4),
        Candidate(1, 1.0, {"region": "us"}, in_flight=0, ttft=None),
        Candidate(2, 0.0, {"region": "eu"}),
        Candidate(3, 1.0, {}, in_flight=1, ttft=0.1),
    ]
    for region in ("eu", "us", "ap", None):
        for _ in range(10):
            assert sorted(indices(b.order(group, region))) == [0, 1, 3]


def test_least_inflight_prefers_the_deployment_with_fewer_calls_under_way() -> None:
    b = Balancer("least_inflight")
    group = [Candidate(0, 1.0, in_flight=4), Candidate(1, 1.0, in_flight=0)]
    assert firsts(b, group, 10) == [1] * 10


def test_least_inflight_scales_calls_under_way_by_weight() -> None:
    """4 calls on a weight-8 deployment load it less than 1 call on a weight-1 one."""
    b = Balancer("least_inflight")
    group = [Candidate(0, 1.0, in_flight=1), Candidate(1, 8.0, in_flight=4)]
    assert firsts(b, group, 10) == [1] * 10
    assert indices(b.order(group)) == [1, 0]


def test_least_inflight_rotates_among_equals() -> None:
    b = Balancer("least_inflight")
    assert firsts(b, cands(1, 1, 1), 6) == [0, 1, 2, 0, 1, 2]


def test_least_inflight_shares_turns_evenly_among_equals_when_one_is_busier() -> None:
    """The busier deployment's round-robin turns must not all go to one of the idle ones:
    equals at equal weight get equal shares."""
    b = Balancer("least_inflight")
    group = [
        Candidate(0, 1.0, in_flight=0),
        Candidate(1, 1.0, in_flight=0),
        Candidate(2, 1.0, in_flight=3),
    ]
    picks = firsts(b, group, 300)
    assert 2 not in picks
    assert Counter(picks) == {0: 150, 1: 150}


def test_lowest_latency_puts_unmeasured_first_then_the_fastest() -> None:
    b = Balancer("lowest_latency")
    group = [
        Candidate(0, 1.0, ttft=0.5),
        Candidate(1, 1.0, ttft=None),
        Candidate(2, 1.0, ttft=0.2),
        Candidate(3, 1.0, ttft=None),
        Candidate(4, 1.0, ttft=0.3),
    ]
    for _ in range(10):
        order = indices(b.order(group))
        assert sorted(order[:2]) == [1, 3]
        assert order[2:] == [2, 4, 0]


def test_lowest_latency_shares_turns_evenly_among_the_unmeasured() -> None:
    b = Balancer("lowest_latency")
    group = [
        Candidate(0, 1.0, ttft=None),
        Candidate(1, 1.0, ttft=None),
        Candidate(2, 1.0, ttft=0.01),
    ]
    assert Counter(firsts(b, group, 300)) == {0: 150, 1: 150}


def test_lowest_latency_picks_the_fastest_when_all_are_measured() -> None:
    b = Balancer("lowest_latency")
    group = [Candidate(0, 5.0, ttft=0.9), Candidate(1, 1.0, ttft=0.05), Candidate(2, 1.0, ttft=0.4)]
    for _ in range(10):
        assert indices(b.order(group)) == [1, 2, 0]


TAGGED = [
    Candidate(0, 1.0, {"region": "eu"}),
    Candidate(1, 1.0, {"region": "us"}),
    Candidate(2, 1.0, {"region": "eu"}),
    Candidate(3, 1.0, {}),
]


def test_tag_aware_puts_the_region_matches_first() -> None:
    b = Balancer("tag_aware")
    for _ in range(10):
        order = indices(b.order(TAGGED, "eu"))
        assert sorted(order[:2]) == [0, 2]
        assert sorted(order[2:]) == [1, 3]


def test_tag_aware_round_robins_within_the_region() -> None:
    b = Balancer("tag_aware")
    assert firsts(b, TAGGED, 6, "eu") == [0, 2, 0, 2, 0, 2]


def test_tag_aware_weights_within_the_region() -> None:
    b = Balancer("tag_aware")
    group = [
        Candidate(0, 3.0, {"region": "eu"}),
        Candidate(1, 1.0, {"region": "eu"}),
        Candidate(2, 100.0, {"region": "us"}),
    ]
    assert Counter(firsts(b, group, 40, "eu")) == {0: 30, 1: 10}


@pytest.mark.parametrize("region", ["ap", None])
def test_tag_aware_falls_back_to_all_when_no_region_matches(region: str | None) -> None:
    b = Balancer("tag_aware")
    assert Counter(firsts(b, TAGGED, 8, region)) == {0: 2, 1: 2, 2: 2, 3: 2}


def test_an_unknown_strategy_raises() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'random'"):
        Balancer("random")


def test_ewma_takes_the_first_sample_as_is() -> None:
    e = Ewma()
    assert e.value is None
    e.observe(2.0)
    assert e.value == 2.0


def test_ewma_smooths_later_samples_with_alpha() -> None:
    e = Ewma(alpha=0.3)
    e.observe(10.0)
    e.observe(20.0)
    assert e.value == pytest.approx(13.0)
    e.observe(0.0)
    assert e.value == pytest.approx(9.1)
    e = Ewma(alpha=1.0)
    e.observe(1.0)
    e.observe(7.0)
    assert e.value == pytest.approx(7.0)


def test_without_an_rng_two_balancers_give_the_same_sequence() -> None:
    group = cands(2, 1, 1, 3)
    one, two = Balancer("weighted_round_robin"), Balancer("weighted_round_robin")
    assert [indices(one.order(group)) for _ in range(30)] == [
        indices(two.order(group)) for _ in range(30)
    ]


def test_with_an_rng_the_scores_may_start_elsewhere() -> None:
    group = cands(1, 1)
    assert Balancer("weighted_round_robin").order(group)[0].index == 0
    b = Balancer("weighted_round_robin", rng=seq_rng([0.0, 0.9]))
    assert b.order(group)[0].index == 1
    assert Counter(firsts(b, group, 100)) == {0: 50, 1: 50}, "still spread by weight"
