"""Paired comparisons: by scenario and seed, with a deterministic bootstrap interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.lab import compare, evaluate, parse_objective
from servesim.lab.compare import bootstrap_mean, paired
from servesim.lab.evaluate import scenario_mean


def test_compare_of_a_policy_with_itself_reports_no_difference(tiny: str, pol: str) -> None:
    result = compare(pol + "Fcfs", pol + "Fcfs", tiny)
    assert result.effects and all(e == 0.0 for _, _, e in result.effects)
    assert (result.mean_effect, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert result.verdict.startswith("no difference: identical figures on all 4 runs")
    assert "goodput_per_s +0.0% [+0.0%, +0.0%]" in result.verdict


def test_pairs_are_matched_by_scenario_and_seed(tiny: str, pol: str) -> None:
    goal = parse_objective("goodput")
    a = evaluate(pol + "Fcfs", tiny, goal, isolate=False)
    b = evaluate(pol + "DropHalf", tiny, goal, isolate=False)
    c = paired(a, b, goal)
    assert [(s, k) for s, k, _ in c.effects] == [
        ("chat-small", 0),
        ("chat-small", 1),
        ("routed", 0),
        ("routed", 1),
    ]
    for (scenario, seed, effect), run_a, run_b in zip(c.effects, a.runs, b.runs, strict=True):
        assert (run_a.scenario, run_a.seed) == (scenario, seed)
        assert run_a.metrics is not None and run_b.metrics is not None
        ratio = run_b.metrics["goodput_per_s"] / run_a.metrics["goodput_per_s"]
        assert effect == pytest.approx(math.log(ratio))
    assert c.ci_high < 0
    assert c.verdict.startswith("Fcfs better than DropHalf on 2/2 scenarios; goodput_per_s -")
    assert c.to_dict()["relative_change"] == pytest.approx(math.expm1(c.mean_effect))


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    values = np.array([0.1, 0.12, 0.08, 0.15, 0.11, 0.09])
    first = bootstrap_mean(values)
    assert first == bootstrap_mean(values)
    mean, low, high = first
    assert low < mean < high and mean == pytest.approx(values.mean())
    assert low > 0
    assert bootstrap_mean(np.array([0.3])) == (0.3, 0.3, 0.3)


def test_a_failed_policy_gives_no_comparison(tiny: str, pol: str) -> None:
    result = compare(pol + "Fcfs", pol + "Raiser", tiny, seeds=[0])
    assert result.verdict.startswith("Raiser failed 2 run(s) (error: schedule raised ValueError")


def test_a_lower_is_better_metric_is_shown_in_its_own_direction(tiny: str, pol: str) -> None:
    goal = parse_objective("p99_ttft")
    a = evaluate(pol + "Fcfs", tiny, goal, isolate=False)
    b = evaluate(pol + "DropHalf", tiny, goal, isolate=False)
    c = paired(a, b, goal)
    ttft_a = np.array([r.metrics["p99_ttft_s"] for r in a.runs if r.metrics])
    ttft_b = np.array([r.metrics["p99_ttft_s"] for r in b.runs if r.metrics])
    # the headline is the geometric-mean ratio of B's p99 TTFT to A's, minus one: positive,
    # since DropHalf's starved requests sit at the stop time
    expected = float(np.exp(np.mean(np.log(ttft_b / ttft_a)))) - 1
    assert c.to_dict()["relative_change"] == pytest.approx(expected)
    assert expected > 0 and c.ci_high < 0  # ... and worse: a negative utility effect
    assert c.verdict.startswith("Fcfs better than DropHalf on 2/2 scenarios; p99_ttft_s +")


@given(
    st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=2, max_size=30),
)
def test_the_bootstrap_interval_brackets_the_mean_and_flips_with_the_sign(
    values: list[float],
) -> None:
    data = np.array(values)
    mean, low, high = bootstrap_mean(data)
    assert low - 1e-12 <= mean <= high + 1e-12
    neg_mean, neg_low, neg_high = bootstrap_mean(-data)
    assert neg_mean == pytest.approx(-mean)
    assert (neg_low, neg_high) == pytest.approx((-high, -low), abs=1e-9)


@given(
    st.dictionaries(
        st.sampled_from(["goodput_per_s", "p99_ttft_s", "cost_per_mtok_usd"]),
        st.floats(0.01, 100.0),
        min_size=3,
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from(["goodput_per_s", "p99_ttft_s", "cost_per_mtok_usd"]),
        st.floats(0.01, 100.0),
        min_size=3,
        max_size=3,
    ),
)
def test_effects_are_antisymmetric(a: dict[str, float], b: dict[str, float]) -> None:
    goal = parse_objective("goodput:1,p99_ttft:0.5,cost:0.25")
    assert goal.delta(a, b) == pytest.approx(-goal.delta(b, a))
    assert goal.delta(a, a) == 0.0


def test_every_scenario_counts_once_however_many_seeds_it_runs() -> None:
    assert scenario_mean([("x", 1.0), ("x", 3.0), ("y", 10.0)]) == 6.0
    strata = np.array(["x", "x", "y"], dtype=object)
    mean, low, high = bootstrap_mean(np.array([1.0, 3.0, 10.0]), strata)
    assert mean == 6.0
    # only x's seeds vary: its resampled mean lies in [1, 3], so the headline in [5.5, 6.5]
    assert 5.5 <= low <= mean <= high <= 6.5
