"""The iteration log summarised chunk by chunk keeps the time series' totals exactly and
agrees with the whole-table figures, however the rows are cut into chunks."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.columns import RequestTable
from servesim.engine.records import (
    ITERATION_COLUMNS,
    REQUEST_COLUMNS,
    RejectReason,
    SimulationRecords,
    _request_left,
)
from servesim.metrics import SLOSpec, SLOTargets, summarize
from servesim.metrics.efficiency import compute_efficiency
from servesim.metrics.streaming import IterationPass
from servesim.metrics.summary import _over_time
from servesim.metrics.timeseries import iteration_spans
from tests.metrics.factories import add_iteration, add_request, replica

# (replica, gap before the row, duration, sequences, KV blocks); integers keep sums exact.
rows = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(1, 4), st.integers(0, 9),
              st.integers(0, 100)),
    min_size=1,
    max_size=40,
)  # fmt: skip


def _records(spec: list[tuple[int, int, int, int, int]]) -> SimulationRecords:
    rec = SimulationRecords(replicas=[replica(0), replica(1)], end_s=1000.0)
    clock = [0, 0]  # each replica's rows start in order, as the engine appends them
    for rid, gap, duration, seqs, blocks in spec:
        start = clock[rid] + gap
        clock[rid] = start + duration - (duration > 1)  # sometimes overlapping (PP)
        add_iteration(
            rec, start=float(start), duration=float(duration), seqs=seqs, kv_blocks=blocks,
            flops=float(duration), energy_j=2.0 * duration, replica_id=rid,
        )  # fmt: skip
    return rec


def _chunks(it: dict[str, np.ndarray], cuts: list[int]) -> list[dict[str, np.ndarray]]:
    bounds = sorted({0, it["start_s"].size, *(c % (it["start_s"].size + 1) for c in cuts)})
    return [{k: v[a:b] for k, v in it.items()} for a, b in pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(rows, st.lists(st.integers(0, 40), max_size=6), st.sampled_from([4, 100]))
def test_chunked_series_keep_totals_and_match_the_whole_table(
    spec: list[tuple[int, int, int, int, int]], cuts: list[int], num_points: int
) -> None:
    rec = _records(spec)
    it = rec.iterations.view()
    end = it["start_s"] + it["duration_s"]
    window = (0.0, float(end.max()) + 1.0)
    stream = IterationPass(rec.replicas, window, num_points=num_points)
    for chunk in _chunks(it, cuts):
        stream.add(chunk)
    stream.finish()
    # Totals: the integral over the window is every segment's value x length, exactly.
    seg_end = iteration_spans(it["replica_id"], it["start_s"], end)
    lengths = seg_end - it["start_s"]
    assert stream.g_used[-1] - stream.g_used[0] == float(np.dot(it["num_kv_blocks_used"], lengths))
    assert stream.g_seqs[-1] - stream.g_seqs[0] == float(np.dot(it["num_seqs"], lengths))
    kv, batch = stream.over_time()
    if num_points == 100:
        want_kv, want_batch, busy = _over_time(rec, it, window)
        assert kv.mean == pytest.approx(want_kv.mean, rel=1e-12, abs=1e-15)
        assert batch.mean == pytest.approx(want_batch.mean, rel=1e-12, abs=1e-15)
        assert (kv.max, batch.max) == (want_kv.max, want_batch.max)
        assert kv.series == pytest.approx(want_kv.series, rel=1e-5, abs=1e-12)
        assert stream.busy == busy  # integer intervals: exact
        span = window[1] - window[0]
        want_eff = compute_efficiency(it, rec.replicas, busy, span, 10)
        assert stream.efficiency(span, 10) == want_eff


def test_an_empty_log_streams_to_zero_series() -> None:
    rec = SimulationRecords(replicas=[replica(0)])
    stream = IterationPass(rec.replicas, (0.0, 10.0))
    stream.add({k: np.empty(0, dtype=v) for k, v in ITERATION_COLUMNS.items()})
    stream.finish()
    kv, batch = stream.over_time()
    assert (kv.mean, kv.max, batch.mean, batch.series) == (0.0, 0.0, 0.0, ())


requests = st.lists(
    st.tuples(
        st.integers(0, 100),  # arrival
        st.integers(0, 5),  # queueing
        st.integers(0, 50),  # prefill + decode
        st.integers(1, 50),  # output tokens
        st.sampled_from([0, 0, 0, 2, 3]),  # reject reason (3: not finished)
        st.integers(0, 2),  # SLO class
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(requests, st.integers(1, 7), st.integers(1, 9))
def test_a_chunked_request_table_summarises_exactly_like_the_plain_one(
    spec: list[tuple[int, int, int, int, int, int]], budget: int, chunk: int
) -> None:
    slo = SLOSpec(ttft_s=3.0, tpot_s=0.5, classes=(("b", SLOTargets(ttft_s=1.0)),))
    out = []
    chunked_table = RequestTable(
        REQUEST_COLUMNS, budget_rows=budget, chunk_rows=chunk, is_finished=_request_left
    )
    for table in (None, chunked_table):
        rec = SimulationRecords(replicas=[replica(0)], slo_classes=["a", "b", "c"], end_s=200.0)
        if table is not None:
            rec.requests = table
        for arrival, queue, run, num_out, reason, cls in sorted(spec):
            if reason:
                why = RejectReason(reason)
                add_request(rec, arrival=arrival, out=num_out, reason=why, slo_class_index=cls)
                continue
            first = arrival + queue + 1
            add_request(
                rec,
                arrival=arrival,
                scheduled=arrival + queue,
                first=first,
                done=first + run,
                out=num_out,
                slo_class_index=cls,
            )
        out.append(summarize(rec, slo))
    plain, chunked = out
    assert chunked.to_dict() == plain.to_dict()
