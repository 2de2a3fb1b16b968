"""``--target-rate`` objectives: every plan evaluated at the target rate, ranked there."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from conftest import small_scenario
from servesim.api import plan_config, simulate
from servesim.cli import app
from servesim.core.errors import ConfigError
from servesim.planner.evaluate import OK, PlanResult
from servesim.planner.rank import TARGET_OBJECTIVES, check_objective, rank
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import PlanSpec, SearchSpace

RATE = 4.0


def _at_rate(plan: PlanSpec, holds: bool, ttft: float, tpot: float, energy: float) -> PlanResult:
    """A plan evaluated at RATE: capacity RATE when it holds there, else 0."""
    metrics = {"ttft_p99_s": ttft, "tpot_p99_s": tpot, "energy_per_output_token_j": energy}
    return PlanResult(plan, OK, capacity_per_s=RATE if holds else 0.0, metrics=metrics)


def test_target_objectives_pick_the_hand_computed_plan() -> None:
    fails = _at_rate(PlanSpec("l40s"), False, 0.1, 0.01, 0.5)  # cheapest and best, but fails
    cheap = _at_rate(PlanSpec("a100-80gb"), True, 0.9, 0.05, 3.0)  # $1.79/h
    frugal = _at_rate(PlanSpec("a100-80gb", replicas=2), True, 0.5, 0.04, 2.0)  # $3.58/h
    quick = _at_rate(PlanSpec("h100-sxm"), True, 0.3, 0.02, 2.5)  # $2.99/h
    plans = [fails, cheap, frugal, quick]
    # By hand: cheapest holding = a100 x1; least J/token holding = a100 x2; lowest TTFT = h100.
    assert rank(plans, "cost_at_rate", RATE)[0] is cheap
    assert rank(plans, "energy_per_token", RATE)[0] is frugal
    assert rank(plans, "latency", RATE)[0] is quick
    assert all(fails not in rank(plans, o, RATE) for o in TARGET_OBJECTIVES)


def test_target_objectives_need_a_finite_positive_rate() -> None:
    for objective in TARGET_OBJECTIVES:
        with pytest.raises(ConfigError, match="target rate"):
            check_objective(objective, None)
    for bad in (math.nan, -1.0, 0.0, math.inf):
        with pytest.raises(ConfigError, match="finite rate"):
            check_objective("cost_at_rate", bad)
    check_objective("goodput_per_dollar", None)  # the no-target mode


SEARCH_RATE = 1.5
SPACE = SearchSpace(gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1,), pp_options=(1,))


def _expected(scenario, objective: str) -> str:
    """The winner by hand: independent ``simulate`` runs of every plan at SEARCH_RATE."""
    rows = []
    for plan in (PlanSpec(g, replicas=n) for g in ("h100-sxm", "a100-80gb") for n in (1, 2)):
        summary = simulate(plan_config(scenario, plan, SEARCH_RATE)).summary
        if not scenario.criterion.check(summary)[0]:
            continue
        energy = summary.efficiency.energy_per_output_token_j
        ttft, tpot = summary.ttft.p99_s, summary.tpot.p99_s
        key = {
            "cost_at_rate": (plan.price_per_hour_usd, ttft),
            "energy_per_token": (energy, plan.price_per_hour_usd),
            "latency": (ttft, tpot, plan.price_per_hour_usd),
        }[objective]
        rows.append((key, plan.label()))
    assert len(rows) >= 3, "the space should offer a choice"
    return min(rows)[1]


@pytest.mark.parametrize("objective", TARGET_OBJECTIVES)
def test_search_at_target_rate_picks_the_hand_computed_plan(objective: str) -> None:
    scenario = replace(small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), requests_per_replica=60)
    options = SearchOptions(objective=objective, target_rate_per_s=SEARCH_RATE)
    report = run_search(scenario, SPACE, options=options)
    assert report.ranked[0].plan.label() == _expected(scenario, objective)
    best = report.ranked[0]
    assert best.capacity_per_s == SEARCH_RATE and best.num_probes == 1  # one probe, at the rate
    assert best.metrics["at_rate_per_s"] == SEARCH_RATE


def test_cli_target_rate_defaults_to_cost_and_rejects_bad_rates() -> None:
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:1", "--tp", "1", "--pp", "1"]
    args += ["--slo-ttft-p99", "1", "--requests-per-replica", "40", "--inline", "--quiet"]
    ok = CliRunner().invoke(app, [*args, "--target-rate", "1"])
    assert ok.exit_code == 0, ok.output
    assert "objective cost_at_rate at 1 req/s" in ok.output
    assert "p99 TPOT" not in ok.output.splitlines()[1]  # unset targets are not printed as None
    # ConfigError: the CLI's main() prints it as one line and exits 2.
    for bad in ("nan", "-1"):
        res = CliRunner().invoke(app, [*args, "--target-rate", bad])
        assert isinstance(res.exception, ConfigError) and "--target-rate" in str(res.exception)
    no_rate = CliRunner().invoke(app, [*args, "--objective", "latency"])
    assert isinstance(no_rate.exception, ConfigError) and "target rate" in str(no_rate.exception)


@pytest.mark.parametrize("objective", TARGET_OBJECTIVES)
def test_every_target_objective_prunes_plans_whose_bound_misses_the_rate(objective: str) -> None:
    scenario = small_scenario(ttft_p99_s=1.0)
    space = SearchSpace(gpus=(("h100-sxm", 1),), tp_options=(1,), pp_options=(1,))
    options = SearchOptions(objective=objective, target_rate_per_s=1000.0)
    report = run_search(scenario, space, options=options)
    assert report.num_simulated == 0
    assert all("below the target rate" in r.reason for r in report.results)


def test_cost_bisection_over_replicas_finds_the_price_order_winner_with_fewer_probes() -> None:
    scenario = replace(small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), requests_per_replica=60)
    space = SearchSpace(gpus=(("h100-sxm", 6), ("a100-80gb", 6)), tp_options=(1,), pp_options=(1,))
    rate = 8.0
    every = run_search(
        scenario,
        space,
        options=SearchOptions(objective="cost_at_rate", target_rate_per_s=rate, exhaustive=True),
    )
    fast = run_search(
        scenario, space, options=SearchOptions(objective="cost_at_rate", target_rate_per_s=rate)
    )
    assert every.ranked and fast.ranked[0].plan == every.ranked[0].plan
    assert fast.num_simulated < every.num_simulated
    # Plans skipped by the bisection say why.
    skipped = [r for r in fast.results if r.status == "pruned" and "dominated" in r.reason]
    assert skipped and all(
        "fewer replicas than" in r.reason or "dearer than" in r.reason for r in skipped
    )
