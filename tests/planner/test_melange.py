"""The Mélange integer program: a mix wins where types are good at different request sizes."""

from __future__ import annotations

import pytest

from conftest import small_scenario
from servesim.core.errors import InfeasibleError
from servesim.planner.melange import MixOption, single_type_cost, solve_mix
from servesim.planner.mix import SizeSlice, plan_mix, size_slices
from servesim.planner.space import PlanSpec

# A is cheap and fine on short requests, poor on long ones; B is dear but handles long ones.
OPTIONS = [MixOption("A", 1.0, gpu="a", num_gpus=1), MixOption("B", 3.0, gpu="b", num_gpus=1)]
RATES = [10.0, 10.0]  # req/s of (short, long)
CAPACITY = [[10.0, 1.0], [12.0, 5.0]]  # req/s one instance sustains per slice


def test_mix_beats_every_single_type() -> None:
    # Single types: A needs 10/10 + 10/1 = 11 instances ($11); B needs 10/12 + 10/5 -> 3 ($9).
    # Mix: 1 A for the short slice ($1) + 2 B for the long one ($6) = $7.
    assert single_type_cost(OPTIONS[0], RATES, CAPACITY[0]) == (11, 11.0)
    assert single_type_cost(OPTIONS[1], RATES, CAPACITY[1]) == (3, 9.0)
    mix = solve_mix(OPTIONS, RATES, CAPACITY)
    assert mix.counts == {"A": 1, "B": 2}
    assert mix.cost_per_hour_usd == pytest.approx(7.0)
    assert mix.best_single == ("B", 3, 9.0)
    assert mix.saving_fraction == pytest.approx(1 - 7 / 9)
    assert (0, "A", pytest.approx(1.0)) in mix.shares
    assert (1, "B", pytest.approx(1.0)) in mix.shares


def test_gpu_limits_bind() -> None:
    # Only one B GPU: the long slice (10 req/s) needs 5 B-equivalents' worth of A help.
    mix = solve_mix(OPTIONS, RATES, CAPACITY, gpu_limits={"b": 1})
    assert mix.counts.get("B", 0) <= 1
    served_long = sum(share for s, _, share in mix.shares if s == 1)
    assert served_long == pytest.approx(1.0)


def test_a_slice_nobody_serves_is_infeasible() -> None:
    with pytest.raises(InfeasibleError, match="no GPU mix"):
        solve_mix(OPTIONS, RATES, [[10.0, 0.0], [12.0, 0.0]])


def test_availability_caps_instances() -> None:
    # One of each serves 10 short + 5 long req/s at most: 10 long req/s cannot fit.
    limited = [MixOption("A", 1.0, max_instances=1), MixOption("B", 3.0, max_instances=1)]
    with pytest.raises(InfeasibleError):
        solve_mix(limited, RATES, CAPACITY)


def test_plan_mix_from_simulations() -> None:
    """Capacities come from capacity searches per (instance type, size slice)."""
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    slices = size_slices(scenario)
    assert sum(s.fraction for s in slices) == pytest.approx(1.0)
    short_long = (SizeSlice(300, 200, 0.5), SizeSlice(4000, 200, 0.5))
    report = plan_mix(
        scenario,
        [PlanSpec("h100-sxm"), PlanSpec("a100-80gb")],
        2.0,
        available={"h100-sxm": 4, "a100-80gb": 4},
        slices=short_long,
    )
    (h100_short, h100_long), (a100_short, a100_long) = report.capacity
    assert h100_short > h100_long > 0 and a100_short > a100_long > 0
    assert h100_long > a100_long  # long prompts need the H100's compute
    served = {s: sum(x for i, _, x in report.allocation.shares if i == s) for s in (0, 1)}
    assert served == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert report.allocation.cost_per_hour_usd > 0
