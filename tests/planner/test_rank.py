"""Ranking by objective and Pareto fronts on hand-made results."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.planner.evaluate import OK, PlanResult
from servesim.planner.rank import (
    PARETO_AXES,
    axis_value,
    check_objective,
    pareto_front,
    rank,
    why_wins,
)
from servesim.planner.space import PlanSpec


def _result(gpu: str, tp: int, cap: float, ttft: float, energy: float) -> PlanResult:
    metrics = {"ttft_p99_s": ttft, "tpot_p99_s": 0.05, "energy_per_output_token_j": energy}
    return PlanResult(PlanSpec(gpu, tp), OK, capacity_per_s=cap, metrics=metrics)


def test_objectives_order_plans() -> None:
    cheap = _result("a100-80gb", 1, 2.0, 0.9, 3.0)
    fast = _result("h100-sxm", 2, 6.0, 0.3, 2.0)
    per_dollar = sorted((cheap, fast), key=lambda r: -r.capacity_per_s / r.price_per_hour_usd)
    assert rank([cheap, fast], "goodput_per_dollar") == per_dollar
    assert rank([cheap, fast], "latency")[0] is fast
    assert rank([cheap, fast], "energy_per_token")[0] is fast
    # The cheaper deployment wins cost_at_rate only if it reaches the rate.
    assert rank([cheap, fast], "cost_at_rate", 1.0)[0] is cheap
    assert rank([cheap, fast], "cost_at_rate", 5.0)[0] is fast


def test_zero_capacity_and_failed_plans_are_not_ranked() -> None:
    dead = _result("h100-sxm", 1, 0.0, 0.1, 1.0)
    failed = PlanResult(PlanSpec("h100-sxm", 4), "failed", "boom")
    assert rank([dead, failed], "goodput_per_dollar") == []


def test_pareto_front_drops_dominated_plans() -> None:
    a = _result("h100-sxm", 1, 4.0, 0.5, 2.0)
    b = _result("h100-sxm", 2, 4.0, 0.4, 2.5)  # costs 2x per capacity, but lower TTFT
    c = _result("h100-sxm", 4, 4.0, 0.6, 3.0)  # worse than b on every axis
    front = pareto_front([a, b, c])
    assert a in front and b in front and c not in front


def test_why_wins_mentions_the_difference_and_the_limit() -> None:
    a = PlanResult(PlanSpec("h100-sxm", 1), OK, capacity_per_s=4.0, limiting="tpot_p99")
    b = PlanResult(PlanSpec("h100-sxm", 2), OK, capacity_per_s=4.0, limiting="ttft_p99")
    text = why_wins([a, b], 0, "goodput_per_dollar")
    assert "tp 1 not 2" in text and "limited by tpot_p99" in text
    assert "on the objective over the next plan" in text


def test_bad_objective_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="objective"):
        check_objective("fastest", None)
    with pytest.raises(ConfigError, match="target rate"):
        check_objective("cost_at_rate", None)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.1, 10), st.floats(0.01, 5), st.floats(0.1, 10)),
        min_size=1,
        max_size=25,
    )
)
def test_pareto_front_properties(points: list[tuple[float, float, float]]) -> None:
    results = [
        PlanResult(
            PlanSpec("h100-sxm", replicas=i + 1),
            OK,
            capacity_per_s=cap,
            metrics={"ttft_p99_s": ttft, "energy_per_output_token_j": energy},
        )
        for i, (cap, ttft, energy) in enumerate(points)
    ]
    front = pareto_front(results)
    assert front

    def axes(r: PlanResult) -> tuple[float, ...]:
        return tuple(axis_value(r, a) for a in PARETO_AXES)

    def dominates(p: tuple[float, ...], q: tuple[float, ...]) -> bool:
        return all(a <= b for a, b in zip(p, q, strict=True)) and p != q

    for r in front:  # nobody beats a front member
        assert not any(dominates(axes(o), axes(r)) for o in results)
    for r in results:  # everyone else is beaten by someone on the front
        if r not in front:
            assert any(dominates(axes(f), axes(r)) for f in front)
