"""Invariants of summarize() on random hand-built records (hypothesis)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.records import RejectReason, SimulationRecords
from servesim.metrics import SLOSpec, summarize
from tests.metrics.factories import add_iteration, add_request, replica

request_rows = st.lists(
    st.tuples(
        st.floats(0, 100),  # arrival
        st.floats(0, 5),  # queueing
        st.floats(0, 5),  # prefill
        st.floats(0, 50),  # decode
        st.integers(1, 50),  # output tokens
        st.booleans(),  # rejected
    ),
    min_size=1,
    max_size=30,
)
iteration_rows = st.lists(
    st.tuples(st.floats(0, 150), st.floats(0.001, 5), st.integers(0, 64), st.integers(0, 100)),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(request_rows, iteration_rows, st.floats(0.01, 10), st.floats(0.01, 1))
def test_invariants(
    reqs: list[tuple[float, float, float, float, int, bool]],
    iters: list[tuple[float, float, int, int]],
    ttft_target: float,
    tpot_target: float,
) -> None:
    rec = SimulationRecords(replicas=[replica()], end_s=200.0)
    for arrival, queue, prefill, decode, out, rejected in sorted(reqs):
        if rejected:
            add_request(rec, arrival=arrival, out=out, reason=RejectReason.EXCEEDS_KV_CAPACITY)
            continue
        first = arrival + queue + prefill
        add_request(
            rec,
            arrival=arrival,
            scheduled=arrival + queue,
            first=first,
            done=first + decode,
            out=out,
        )
    for start, duration, seqs, blocks in iters:
        add_iteration(
            rec,
            start=start,
            duration=duration,
            seqs=seqs,
            kv_blocks=blocks,
            flops=duration * 1e14,
            hbm_bytes=duration * 1e12,
            energy_j=duration * 400.0,
        )
    s = summarize(rec, SLOSpec(ttft_s=ttft_target, tpot_s=tpot_target))
    assert s.num_completed + s.num_rejected == s.num_requests
    assert s.ttft.count == s.num_completed
    if s.ttft.count:
        assert s.ttft.min_s <= s.ttft.p50_s <= s.ttft.p90_s <= s.ttft.p99_s <= s.ttft.max_s
        assert s.e2e.min_s >= s.ttft.min_s
    assert s.slo is not None
    assert 0 <= s.slo.overall.num_met <= s.num_completed
    assert sum(c.num_met for c in s.slo.per_class) == s.slo.overall.num_met
    assert 0 <= s.kv_utilization.mean <= max(s.kv_utilization.max, 1e-12) + 1e-9
    assert s.batch_size.mean <= s.batch_size.max + 1e-9
    e = s.efficiency
    assert e.energy_j >= 100.0 * s.duration_s - 1e-6  # never below the idle floor
    assert e.energy_j <= 700.0 * s.duration_s + 1e-6 or s.duration_s < max(
        (st + d for st, d, _, _ in iters), default=0.0
    )
    assert e.busy_fraction >= 0
    json.dumps(s.to_dict(), allow_nan=False)
