"""MoE at the cluster level: EP load from routing skew, EPLB balancing, expert offloading."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.cluster import DeploymentConfig, DeploymentError, build_deployment, run_cluster
from servesim.cluster.moe import (
    ExpertOffloadPerf,
    device_loads,
    eplb_popularity,
    eplb_slots,
    expert_cache_hit_rate,
    routing_frequencies,
    with_eplb,
)
from servesim.perf import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.workload.request import Request

PERF = RooflinePerfModel()
MIXTRAL = resolve_model("mixtral-8x7b")
H100 = get_gpu("h100-sxm")
PREFILL = BatchShape.from_lists(prefill=[(4096, 0)])


def ep_plan(zipf: float) -> ReplicaPlan:
    return ReplicaPlan(model=MIXTRAL, gpu=H100, tp=8, ep=8, expert_zipf_exponent=zipf)


def test_busiest_device_and_step_time_grow_with_skew() -> None:
    loads = [device_loads(routing_frequencies(ep_plan(z)), 8).max() for z in (0, 0.5, 1, 2)]
    assert loads[0] == pytest.approx(1 / 8) and loads == sorted(loads)
    steps = [PERF.iteration_time(ep_plan(z), PREFILL).total_s for z in (0, 0.5, 1, 2)]
    assert steps == sorted(steps) and steps[-1] > 1.5 * steps[0]


def test_eplb_flattens_the_busiest_device() -> None:
    plan = ep_plan(1.5)
    freq = routing_frequencies(plan)
    before = device_loads(freq, 8).max()
    after = device_loads(np.asarray(eplb_popularity(freq, 8, 8)), 8).max()
    assert after < 0.6 * before
    skewed = PERF.iteration_time(plan, PREFILL).total_s
    balanced = PERF.iteration_time(with_eplb(plan, 8), PREFILL).total_s
    uniform = PERF.iteration_time(ep_plan(0.0), PREFILL).total_s
    assert uniform <= balanced < skewed


@given(
    st.lists(st.floats(0.01, 10), min_size=8, max_size=8),
    st.sampled_from([0, 8, 16]),
)
def test_eplb_conserves_load_and_slots(weights: list[float], redundant: int) -> None:
    freq = np.asarray(weights) / sum(weights)
    devices = eplb_slots(freq, 4, redundant)
    assert all(len(d) == (8 + redundant) // 4 for d in devices)
    assert sum(map(sum, devices)) == pytest.approx(1.0)
    # greedy (LPT) packing bound: the busiest device holds at most the mean plus one slot
    assert max(map(sum, devices)) <= 1 / 4 + max(max(d) for d in devices) + 1e-12
    balanced = device_loads(np.asarray(eplb_popularity(freq, 4, redundant)), 4)
    assert balanced.sum() == pytest.approx(1.0)
    assert balanced.max() <= device_loads(freq, 4).max() + 1e-12


def test_offload_hit_rate_grows_with_cache_and_skew() -> None:
    uniform = routing_frequencies(ReplicaPlan(model=MIXTRAL, gpu=H100))
    skewed = routing_frequencies(ReplicaPlan(model=MIXTRAL, gpu=H100, expert_zipf_exponent=1))
    assert expert_cache_hit_rate(uniform, 4) == pytest.approx(0.5)
    rates = [expert_cache_hit_rate(skewed, n) for n in range(9)]
    assert rates == sorted(rates) and rates[4] > 0.5 and rates[8] == pytest.approx(1.0)


def test_offloading_trades_pcie_time_for_memory() -> None:
    plan = ReplicaPlan(model=MIXTRAL, gpu=H100, expert_zipf_exponent=1.0)
    fetch = [ExpertOffloadPerf(PERF, n).fetch_s(plan, 1) for n in (2, 4, 6)]
    assert fetch == sorted(fetch, reverse=True) and fetch[-1] > 0
    blocks = [ExpertOffloadPerf(PERF, n).memory_plan(plan).num_kv_blocks for n in (2, 4, 6)]
    assert blocks == sorted(blocks, reverse=True)
    # one decode token routes to 2 experts; the misses cross PCIe Gen5 (~64 GB/s per way)
    off = ExpertOffloadPerf(PERF, 4)
    base = off.base.iteration_time(plan, BatchShape.from_lists(decode_contexts=[512]))
    assert off.iteration_time(plan, BatchShape.from_lists(decode_contexts=[512])).total_s == (
        pytest.approx(base.total_s + off.fetch_s(plan, 1))
    )


def test_offloaded_mixtral_serves_on_one_gpu() -> None:
    perf = ExpertOffloadPerf(PERF, 4)
    cfg = DeploymentConfig.model_validate({"pools": [{"gpu": "h100-sxm"}]})
    dep = build_deployment(cfg, "mixtral-8x7b", perf)
    run = run_cluster([Request(i, 0.1 * i, 256, 32) for i in range(8)], dep, perf)
    assert (run.records.requests.view()["num_emitted_tokens"] == 32).all()


def test_eplb_in_a_deployment_and_its_memory_limit() -> None:
    pool = {"gpu": "h100-sxm", "tp": 8, "ep": 8, "expert_zipf_exponent": 1.5}
    plain = build_deployment(
        DeploymentConfig.model_validate({"pools": [pool]}), "mixtral-8x7b", PERF
    )
    cfg = DeploymentConfig.model_validate({"pools": [{**pool, "eplb_redundant_experts": 8}]})
    balanced = build_deployment(cfg, "mixtral-8x7b", PERF)
    t_plain = PERF.iteration_time(plain.pools[0].plan, PREFILL).total_s
    t_balanced = PERF.iteration_time(balanced.pools[0].plan, PREFILL).total_s
    assert t_balanced < t_plain
    too_many = DeploymentConfig.model_validate(
        {"pools": [{**pool, "eplb_redundant_experts": 8000}]}
    )
    with pytest.raises(DeploymentError, match="eplb_redundant_experts=8000"):
        build_deployment(too_many, "mixtral-8x7b", PERF)
