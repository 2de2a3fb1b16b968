"""The cost-model fast path (``servesim.perf.fastcost``) gives the general path's answers, bit
for bit: op by op on random batch shapes, and whole runs (summaries and per-request columns)
on a fixed scenario set, compared byte for byte."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.api import simulate
from servesim.perf.fastcost import FastCost
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from servesim.specs import get_gpu, resolve_model
from servesim.specs.dtypes import DType

FAST = RooflinePerfModel()
GENERAL = RooflinePerfModel(fast_path=False)


def _plan(model: str = "llama-3.1-8b", gpu: str = "h100-sxm", **kw: Any) -> ReplicaPlan:
    return ReplicaPlan(model=resolve_model(model), gpu=get_gpu(gpu), **kw)


# dense TP1/TP2/PP2 (PP3: an uneven split), MoE with EP, a sliding window, fp8 KV, eager mode,
# overlapped host time, measured attention tables, another GPU: the inlined closed form or the
# kernel stack's tables; MLA, linear layers, mixed kinds, sparse attention: the graph's own
PLANS = {
    "dense-tp1": _plan(),
    "dense-tp2": _plan(tp=2),
    "dense-pp2": _plan(pp=2),
    "dense-pp3-eager": _plan("qwen2.5-7b", pp=3, use_cuda_graphs=False),
    "moe-ep2": _plan("mixtral-8x7b", tp=2, ep=2),
    "moe-zipf": _plan("qwen3-30b-a3b", tp=2, expert_zipf_exponent=1.1),
    "sliding": _plan("mistral-7b", kv_dtype=DType.FP8),
    "v1-host-fitted-attention": _plan(host_profile="vllm-v1", kernel_stack="vllm-0.24"),
    "a100": _plan(gpu="a100-80gb"),
    "mla": _plan("deepseek-v3", gpu="h200", tp=8, weight_dtype=DType.FP8),
    "mla-sparse-pp2": _plan("deepseek-v3.2", gpu="h200", tp=8, pp=2, weight_dtype=DType.FP8),
    "linear-layers": _plan("qwen3-next-80b-a3b", gpu="h200", tp=2),
    "mixed-kinds-fitted": _plan("gpt-oss-20b", kernel_stack="vllm-0.24"),
}
CLOSED_FORM = {"dense-tp1", "dense-tp2", "dense-pp2", "dense-pp3-eager", "moe-ep2", "moe-zipf",
               "sliding", "a100"}  # fmt: skip


def _bits(times: StageTimes) -> str:
    """Every float of the answer, round-trip exact (repr), -0.0 and 0.0 apart."""
    return repr(
        (
            times.stage_s,
            times.overhead_s,
            times.flops,
            times.hbm_bytes,
            times.energy_j,
            times.comm_s,
        )
    )


@st.composite
def batches(draw: st.DrawFn) -> BatchShape:
    """Consistent batch shapes: prefill chunks over cached context, decodes, verify chunks."""
    prefill = draw(
        st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 16_000)), min_size=0, max_size=6)
    )
    decodes = draw(st.lists(st.integers(0, 30_000), min_size=0, max_size=200))
    shape = BatchShape.from_lists(prefill, decodes)
    num_verify = draw(st.integers(0, shape.num_prefill_seqs))
    extra = draw(st.integers(0, 4 * num_verify))
    return BatchShape(
        **{
            **{f: getattr(shape, f) for f in shape.__slots__},
            "num_verify_seqs": num_verify,
            "num_extra_logits": extra,
        }
    )


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_plan_takes_the_fast_path_unless_turned_off(name: str) -> None:
    fast = FAST._entry(PLANS[name])[2]
    assert isinstance(fast, FastCost) and not GENERAL.uses_fast_path(PLANS[name])
    assert (fast.attention is None) == (name in CLOSED_FORM)  # the inlined closed form


@settings(max_examples=150, deadline=None, derandomize=True)
@given(batch=batches(), name=st.sampled_from(sorted(PLANS)))
def test_fast_path_is_bit_identical_to_the_general_path(batch: BatchShape, name: str) -> None:
    plan = PLANS[name]
    assert _bits(FAST.iteration_time(plan, batch)) == _bits(GENERAL.iteration_time(plan, batch))


def test_edge_shapes_are_bit_identical() -> None:
    edges = [
        BatchShape(),  # empty
        BatchShape(num_decode_seqs=3),  # decodes with no keys on the GPU (hybrid step)
        BatchShape.from_lists([(1, 0)]),  # one-token prefill
        BatchShape.from_lists([], [1]),
        BatchShape.from_lists([(256, 0)], []),  # at the CUDA-graph limit
        BatchShape.from_lists([(8192, 0)], [5000] * 64),
        BatchShape.from_lists([(4000, 9000)], [40_000]),  # beyond mistral's window
    ]
    for plan in PLANS.values():
        for batch in edges:
            fast, general = FAST.iteration_time(plan, batch), GENERAL.iteration_time(plan, batch)
            assert _bits(fast) == _bits(general), (plan, batch)


BASE: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "workload": {"preset": "sharegpt-vidur", "rate_per_s": 6.0, "num_requests": 120},
    "seed": 3,
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "dense-tp1": BASE,
    "dense-tp2-sarathi-a100": {
        **BASE,
        "hardware": {"gpu": "a100-80gb", "tp": 2},
        "scheduler": {"kind": "sarathi", "chunk_size": 512},
    },
    "dense-pp2": {**BASE, "hardware": {"pp": 2}},
    "moe-ep": {
        **BASE,
        "model": "mixtral-8x7b",
        "deployment": {"pools": [{"name": "moe", "gpu": "h100-sxm", "tp": 2, "ep": 2}]},
    },
    "disaggregated": {**BASE, "disagg": "1P:1D"},
    "speculative": {
        **BASE,
        "hardware": {"engine": "vllm-v1"},
        "speculative": {"method": "eagle", "num_speculative_tokens": 2},
    },
}


def _run_bytes(config: dict[str, Any], perf: RooflinePerfModel) -> tuple[str, dict[str, bytes]]:
    result = simulate(config, perf=perf)
    doc = {
        "summary": result.summary.to_dict(),
        "cluster": result.cluster.to_dict(result.records) if result.cluster else None,
    }
    columns = {
        name: repr(values.tolist()).encode() if values.dtype == object else values.tobytes()
        for name, values in (
            (k, np.ascontiguousarray(v)) for k, v in result.requests_columns().items()
        )
    }
    return json.dumps(doc, sort_keys=True), columns


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_are_byte_identical_on_both_paths(name: str) -> None:
    config = SCENARIOS[name]
    fast_perf, general_perf = RooflinePerfModel(), RooflinePerfModel(fast_path=False)
    fast = _run_bytes(config, fast_perf)
    general = _run_bytes(config, general_perf)
    assert fast[0] == general[0]
    assert fast[1].keys() == general[1].keys()
    for column, data in fast[1].items():
        assert data == general[1][column], column
    # the run went through the fast path (else the comparison would prove nothing)
    plans = [entry[0] for entry in list(fast_perf._plans.values())]
    assert plans and all(fast_perf.uses_fast_path(plan) for plan in plans)


def test_memo_tables_grow_with_token_counts_not_with_shapes() -> None:
    perf = RooflinePerfModel()
    plan = _plan()
    for i in range(300):  # 300 distinct shapes over 7 token counts
        seqs = 1 + i % 7
        perf.iteration_time(plan, BatchShape.from_lists([], [100 + i] * seqs))
    fast = perf._entry(plan)[2]
    assert isinstance(fast, FastCost)
    assert len(fast.bases) == len(perf._cache(plan).by_tokens) == 7


@pytest.mark.parametrize("name", ["dense-tp1", "dense-tp2", "dense-pp2", "moe-ep2"])
def test_comm_time_is_the_collectives_of_explain(name: str) -> None:
    plan = PLANS[name]
    batch = BatchShape.from_lists([(300, 700)], [50, 2000] * 8)
    times = FAST.iteration_time(plan, batch)
    collectives = [op for op in FAST.explain(plan, batch) if op.bound == "comm"]
    assert times.comm_s == pytest.approx(sum(op.time_s for op in collectives), rel=1e-12)
    assert 0.0 <= times.comm_s < sum(times.stage_s)
    if plan.tp * plan.pp * plan.ep > 1:  # a lone GPU has nothing to exchange
        assert times.comm_s > 0.0
    if plan.pp > 1:
        assert any(op.name == "pp_send" for op in collectives)


def test_memo_bound_clears_without_changing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import servesim.perf.fastcost as fastcost

    monkeypatch.setattr(fastcost, "_MAX_BASES", 3)
    perf = RooflinePerfModel()
    plan = _plan()
    shapes = [BatchShape.from_lists([], [100] * n) for n in range(1, 10)]
    answers = [_bits(perf.iteration_time(plan, s)) for s in shapes]
    assert len(perf._entry(plan)[2].bases) <= 3
    assert answers == [_bits(GENERAL.iteration_time(plan, s)) for s in shapes]
