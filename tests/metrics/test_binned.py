"""The fixed-budget iteration bins keep every total exactly, however the log is chunked and
however often bins merge; a report folder too large to load reads back as those bins."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim.report.run_data as run_data
from servesim.api import simulate, write_outputs
from servesim.metrics.binned import STATE_COLUMNS, BinnedSeries
from servesim.metrics.timeseries import iteration_spans, row_states
from servesim.report.html import render_html
from servesim.report.run_data import load_run, write_run_data

# (replica, gap before the row, duration, queued, seqs, blocks, preempted): integer times and
# values, so every sum below is exact in floating point.
rows = st.lists(
    st.tuples(*(st.integers(0, 1), st.integers(0, 5), st.integers(1, 9)),
              *(st.integers(0, 20) for _ in range(4))),
    min_size=1,
    max_size=60,
)  # fmt: skip


def _log(spec: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    clock = [0, 0]
    cols: dict[str, list[float]] = {
        k: [] for k in ("replica_id", "start_s", "duration_s", *STATE_COLUMNS, "num_preempted")
    }
    for rid, gap, duration, queued, seqs, blocks, preempted in spec:
        start = clock[rid] + gap
        clock[rid] = start + duration - (duration > 2)  # some rows overlap the next (PP)
        values = (rid, start, duration, queued, seqs, blocks, preempted)
        for name, value in zip(cols, values, strict=True):
            cols[name].append(float(value))
    log = {k: np.asarray(v) for k, v in cols.items()}
    log["num_prefill_tokens"] = log["num_kv_blocks_used"] * 3
    log["num_decode_seqs"] = log["num_seqs"]
    log["repeat"] = 1 + log["num_queued"] % 2
    return log


@settings(max_examples=150, deadline=None)
@given(rows, st.lists(st.integers(0, 60), max_size=5), st.sampled_from([2, 8, 64]))
def test_bins_keep_every_total_exactly(
    spec: list[tuple[int, ...]], cuts: list[int], num_bins: int
) -> None:
    log = _log(spec)
    n = log["start_s"].size
    binned = BinnedSeries(num_bins=num_bins, width_s=0.25)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    for a, b in pairwise(bounds):
        binned.add({k: v[a:b] for k, v in log.items()})
    binned.finish()
    end = log["start_s"] + log["duration_s"]
    lengths = iteration_spans(log["replica_id"], log["start_s"], end) - log["start_s"]
    out = binned.rows()
    assert out["start_s"].size <= num_bins * 2  # the budget, whatever the run's length
    assert float(np.max(out["start_s"] + out["duration_s"])) == float(end.max())
    for name in STATE_COLUMNS:
        want = float(np.dot(log[name], lengths))
        assert sum(float(t[name].sum()) for t in binned.integrals.values()) == want
        assert float(np.dot(out[name], out["duration_s"])) == pytest.approx(want, rel=1e-12)
    assert float(out["num_preempted"].sum()) == float(log["num_preempted"].sum())
    # tokens spread over their rows' durations: every token lands in some bin
    prefill, decode = (
        log["num_prefill_tokens"].sum(),
        (log["num_decode_seqs"] * log["repeat"]).sum(),
    )
    assert float(out["num_prefill_tokens"].sum()) == pytest.approx(prefill, rel=1e-12, abs=1e-9)
    assert float(out["num_decode_seqs"].sum()) == pytest.approx(decode, rel=1e-12, abs=1e-9)
    assert set(out["repeat"].tolist()) <= {1.0}


def test_a_log_over_the_load_budget_reads_back_as_bins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = simulate({"num_requests": 60, "seed": 4})
    rec = result.records
    write_outputs(result, tmp_path, table_format="csv")
    write_run_data(tmp_path, rec, result.cluster, "csv")
    full = load_run(tmp_path)
    assert full.iterations_bin_s == 0.0 and full.iterations["start_s"].size == rec.iterations.size
    monkeypatch.setattr(run_data, "LOAD_BUDGET_CSV_BYTES", 10)
    monkeypatch.setattr(run_data, "_READ_CHUNK_ROWS", 7)
    small = load_run(tmp_path)
    assert small.iterations_bin_s > 0
    it, got = full.iterations, small.iterations
    assert got["start_s"].size <= 4096  # one replica's bins
    end = it["start_s"] + it["duration_s"]
    spans = iteration_spans(it["replica_id"], it["start_s"], end)
    # a skipped run's row holds its ticks' integrals (timeseries.row_states; its KV ramp
    # integrates to 0 over the row)
    seg_end, values, _ = row_states(it, it["start_s"], end, spans, STATE_COLUMNS)
    assert (it["seq_s"] > 0).any()  # the run skipped some iterations: the rule is tested
    for name in STATE_COLUMNS:
        want = float(np.dot(values[name], seg_end - it["start_s"]))
        assert float(np.dot(got[name], got["duration_s"])) == pytest.approx(want, rel=1e-9)
    assert got["num_prefill_tokens"].sum() == pytest.approx(it["num_prefill_tokens"].sum())
    pytest.importorskip("plotly")
    assert "Replicas over time" in render_html(small)  # the report draws bins like a log
