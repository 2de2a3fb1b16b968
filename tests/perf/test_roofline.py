"""Roofline behaviour: bounds, quantisation, TP/PP/EP effects, calibration flag, caching."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import PCIE5, h100, l40s, llama31_8b, llama31_70b, mixtral_8x7b
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan
from servesim.specs.dtypes import DType

DECODE = BatchShape.from_lists(decode_contexts=[1000] * 8)
PREFILL = BatchShape.from_lists(prefill=[(4096, 0)])


def _gemm_bounds(perf: RooflinePerfModel, plan: ReplicaPlan, batch: BatchShape) -> set[str]:
    names = {"qkv_proj", "o_proj", "mlp_up_gate", "mlp_down"}
    return {o.bound for o in perf.explain(plan, batch) if o.name in names}


def test_decode_memory_bound_prefill_compute_bound(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama31_8b(), h100())
    assert _gemm_bounds(perf, plan, DECODE) == {"memory"}
    assert _gemm_bounds(perf, plan, PREFILL) == {"compute"}


def test_int4_weight_only_speeds_decode_not_prefill(perf: RooflinePerfModel) -> None:
    bf16 = ReplicaPlan(llama31_70b(), h100(), tp=4)
    int4 = replace(bf16, weight_dtype=DType.INT4)
    dec = (
        perf.iteration_time(bf16, DECODE).stage_s[0] / perf.iteration_time(int4, DECODE).stage_s[0]
    )
    pre = perf.iteration_time(bf16, PREFILL).total_s / perf.iteration_time(int4, PREFILL).total_s
    assert dec > 1.6  # GPU time: weight bytes / 4; attention and all-reduces unchanged
    assert 1.0 <= pre < 1.1


def test_fp8_activations_use_fp8_peak(perf: RooflinePerfModel) -> None:
    bf16 = ReplicaPlan(llama31_70b(), h100(), tp=4)
    fp8 = replace(bf16, weight_dtype=DType.FP8, activation_dtype=DType.FP8)
    ratio = perf.iteration_time(bf16, PREFILL).total_s / perf.iteration_time(fp8, PREFILL).total_s
    assert ratio > 1.4


def test_tp_all_reduces_grow_with_size(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama31_70b(), h100(), tp=4)
    single = ReplicaPlan(llama31_8b(), h100(), tp=1)
    names = {"all_reduce_attn", "all_reduce_mlp"}
    assert not [o for o in perf.explain(single, DECODE) if o.name in names and o.time_s > 0]
    times = []
    for tokens in (16, 512, 8192):
        batch = BatchShape.from_lists(prefill=[(tokens, 0)])
        ops = [o for o in perf.explain(plan, batch) if o.name in names]
        assert len(ops) == 2 and all(o.count == 80 for o in ops)  # 2 per layer
        times.append(sum(o.time_s for o in ops))
    assert times[0] < times[1] < times[2]


def test_pp_stage_times(perf: RooflinePerfModel) -> None:
    one = perf.iteration_time(ReplicaPlan(llama31_70b(), h100(), tp=4), PREFILL)
    two = perf.iteration_time(ReplicaPlan(llama31_70b(), h100(), tp=4, pp=2), PREFILL)
    assert len(two.stage_s) == 2 and len(one.stage_s) == 1
    # each stage does about half the layers; sum close to one stage plus the send
    assert two.stage_s[0] == pytest.approx(one.stage_s[0] / 2, rel=0.1)
    assert two.bottleneck_s < one.bottleneck_s
    assert sum(two.stage_s) > one.stage_s[0] * 0.98


def test_pp_uneven_split_allowed(perf: RooflinePerfModel) -> None:
    t = perf.iteration_time(ReplicaPlan(llama31_70b(), h100(), tp=8, pp=3), DECODE)
    assert len(t.stage_s) == 3


def test_pp_over_slow_link_costs_more(perf: RooflinePerfModel) -> None:
    fast = ReplicaPlan(llama31_70b(), h100(), tp=4, pp=2)
    slow = replace(fast, pp_link=PCIE5)
    assert perf.iteration_time(slow, PREFILL).total_s > perf.iteration_time(fast, PREFILL).total_s


def test_ep_skew_slows_moe_step(perf: RooflinePerfModel) -> None:
    uniform = ReplicaPlan(mixtral_8x7b(), h100(), tp=8, ep=8)
    skewed = replace(uniform, expert_zipf_exponent=1.2)
    vector = replace(uniform, expert_popularity=(8, 1, 1, 1, 1, 1, 1, 1))
    batch = BatchShape.from_lists(prefill=[(2048, 0)])
    base = perf.iteration_time(uniform, batch).total_s
    assert perf.iteration_time(skewed, batch).total_s > base * 1.1
    assert perf.iteration_time(vector, batch).total_s > base * 1.1
    names = {o.name for o in perf.explain(uniform, batch)}
    assert {"ep_dispatch", "ep_combine"} <= names


def test_uncalibrated_gpu_flagged(perf: RooflinePerfModel) -> None:
    assert perf.is_calibrated(ReplicaPlan(llama31_8b(), h100()))
    plan = ReplicaPlan(llama31_8b(), l40s())
    assert not perf.is_calibrated(plan)
    assert perf.iteration_time(plan, DECODE).total_s > 0


def test_cuda_graphs_matter_only_when_launch_bound(perf: RooflinePerfModel) -> None:
    graphs = ReplicaPlan(llama31_8b(), h100(), tp=4)  # little GPU work per kernel
    eager = replace(graphs, use_cuda_graphs=False)
    tiny = BatchShape.from_lists(decode_contexts=[10])
    assert perf.iteration_time(eager, tiny).total_s > perf.iteration_time(graphs, tiny).total_s
    assert (
        perf.iteration_time(eager, PREFILL).total_s == perf.iteration_time(graphs, PREFILL).total_s
    )


def test_empty_batch_costs_nothing(perf: RooflinePerfModel) -> None:
    assert perf.iteration_time(ReplicaPlan(llama31_8b(), h100()), BatchShape()).total_s == 0.0


def test_explain_sums_to_total(perf: RooflinePerfModel) -> None:
    plan = ReplicaPlan(llama31_70b(), h100(), tp=4, pp=2)
    batch = BatchShape.from_lists(prefill=[(300, 700)], decode_contexts=[50, 2000])
    ops = perf.explain(plan, batch)
    assert sum(o.time_s for o in ops) == pytest.approx(perf.iteration_time(plan, batch).total_s)


def test_equal_plans_share_cache(perf: RooflinePerfModel) -> None:
    a = ReplicaPlan(llama31_8b(), h100(), tp=2)
    b = ReplicaPlan(llama31_8b(), h100(), tp=2)
    assert a is not b and perf._cache(a) is perf._cache(b)  # one graph and memo tables
    assert perf._entry(a)[2] is perf._entry(b)[2]  # and one fast path with its memo
    assert perf.iteration_time(a, DECODE) == perf.iteration_time(b, DECODE)


@settings(max_examples=40, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.integers(1, 2048), st.integers(0, 4096)), max_size=4),
    contexts=st.lists(st.integers(1, 8192), max_size=32),
    extra=st.integers(1, 512),
)
def test_more_work_never_faster(
    chunks: list[tuple[int, int]], contexts: list[int], extra: int
) -> None:
    perf = RooflinePerfModel()
    plan = ReplicaPlan(llama31_8b(), h100(), tp=2, use_cuda_graphs=False)
    base = perf.iteration_time(plan, BatchShape.from_lists(chunks, contexts)).total_s
    more = perf.iteration_time(plan, BatchShape.from_lists(chunks, [*contexts, extra])).total_s
    assert more >= base
