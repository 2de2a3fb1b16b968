"""MoE expert placement: EPLB and greedy by hand, greedy never worse on the busiest device,
the EP step cost as objective, a user placement by path and the placement contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.cluster import DeploymentConfig, DeploymentError, build_deployment
from servesim.cluster.moe import eplb_popularity, routing_frequencies, slot_loads
from servesim.cluster.placement import (
    EPLBPlacement,
    GreedyPlacement,
    check_placement,
    ep_step_cost_s,
    placed_plan,
)
from servesim.engine.contracts import ContractError
from servesim.perf import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model

PERF = RooflinePerfModel()
WEIGHTS = np.array([5, 1, 4, 6, 8, 7], dtype=float)


def _busiest(freq: np.ndarray, devices: list[list[int]]) -> float:
    return max(map(sum, slot_loads(freq, devices)))


def test_eplb_and_greedy_by_hand() -> None:
    freq = WEIGHTS / WEIGHTS.sum()
    # EPLB (LPT with 3 slots per device): 8, 7, 6 -> d1, 5 -> d0, 4 -> d0 (tie), 1 -> d1
    eplb = EPLBPlacement().place(freq, 2, 0)
    assert eplb == [[4, 0, 2], [5, 3, 1]]
    assert _busiest(freq, eplb) == pytest.approx(17 / 31)
    # greedy swaps 8 (expert 4) and 7 (expert 5): 16 / 15
    greedy = GreedyPlacement().place(freq, 2, 0)
    assert sorted(map(sorted, greedy)) == [[0, 2, 5], [1, 3, 4]]
    assert _busiest(freq, greedy) == pytest.approx(16 / 31)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=8, max_size=8),
    st.sampled_from([0, 4, 8]),
)
def test_greedy_is_valid_and_never_worse_than_eplb(weights: list[int], redundant: int) -> None:
    freq = np.asarray(weights, dtype=float) / sum(weights)
    devices = GreedyPlacement().place(freq, 4, redundant)
    check_placement("greedy", devices, 8, 4, redundant)  # raises if invalid
    assert sum(map(sum, slot_loads(freq, devices))) == pytest.approx(1.0)
    assert _busiest(freq, devices) <= _busiest(freq, EPLBPlacement().place(freq, 4, redundant))


def _plan(zipf: float) -> ReplicaPlan:
    model, gpu = resolve_model("mixtral-8x7b"), get_gpu("h100-sxm")
    return ReplicaPlan(model=model, gpu=gpu, tp=8, ep=8, expert_zipf_exponent=zipf)


def test_the_objective_is_the_perf_models_ep_step_cost() -> None:
    plan = _plan(1.5)
    freq = routing_frequencies(plan)
    contiguous = [[x] for x in range(8)]
    eplb = EPLBPlacement().place(freq, 8, 8)
    greedy = GreedyPlacement().place(freq, 8, 8)
    costs = [ep_step_cost_s(plan, PERF, d) for d in (contiguous, eplb, greedy)]
    assert costs[0] > costs[1] >= costs[2]
    # the eplb placement in a plan is today's with_eplb, bit for bit
    assert placed_plan(plan, "eplb", 8).expert_popularity == eplb_popularity(freq, 8, 8)
    assert placed_plan(plan, "eplb", 0) is plan  # no redundant slots: contiguous, as before


def test_greedy_in_a_deployment_beats_eplb_with_redundant_slots() -> None:
    pool = {"gpu": "h100-sxm", "tp": 8, "ep": 8, "expert_zipf_exponent": 1.5}
    step = BatchShape.from_lists(prefill=[(4096, 0)])
    times = {}
    for placement in ("eplb", "greedy"):
        cfg = DeploymentConfig.model_validate({"pools": [{**pool, "expert_placement": placement}]})
        plan = build_deployment(cfg, "mixtral-8x7b", PERF).pools[0].plan
        times[placement] = PERF.iteration_time(plan, step).total_s
    # with 8 experts on 8 devices there is nothing to swap: one expert per device either way
    assert times["greedy"] == times["eplb"]
    cfg = DeploymentConfig.model_validate(
        {"pools": [{**pool, "expert_placement": "greedy", "eplb_redundant_experts": 8}]}
    )
    plan = build_deployment(cfg, "mixtral-8x7b", PERF).pools[0].plan
    assert PERF.iteration_time(plan, step).total_s < times["eplb"]


_POLICIES = """
class Reverse:
    def bind(self, context):
        self.cost = context.step_cost_s
    def place(self, freq, ep, num_redundant):
        n = len(freq) // ep
        devices = [list(range(d * n, (d + 1) * n))[::-1] for d in range(ep)][::-1]
        assert self.cost(devices) > 0  # the objective is at hand
        return devices

class Short:
    def place(self, freq, ep, num_redundant):
        return [[0]] * ep
"""


def test_user_placement_by_path_and_the_placement_contract(tmp_path: Path) -> None:
    path = tmp_path / "place.py"
    path.write_text(_POLICIES)
    pool = {"gpu": "h100-sxm", "tp": 8, "ep": 4, "expert_zipf_exponent": 1.0}
    cfg = DeploymentConfig.model_validate(
        {"pools": [{**pool, "expert_placement": f"{path}:Reverse"}]}
    )
    plan = build_deployment(cfg, "mixtral-8x7b", PERF).pools[0].plan
    assert sum(plan.expert_popularity) == pytest.approx(1.0)
    bad = DeploymentConfig.model_validate(
        {"pools": [{**pool, "expert_placement": f"{path}:Short"}]}
    )
    with pytest.raises(DeploymentError, match="device 0 holds 1 experts, not 2"):
        build_deployment(bad, "mixtral-8x7b", PERF)
    with pytest.raises(ContractError, match="experts \\[1, 3\\] are on no device") as err:
        check_placement("x", [[0, 2], [0, 2]], 4, 2, 0)
    assert err.value.rule == "expert-placement"
