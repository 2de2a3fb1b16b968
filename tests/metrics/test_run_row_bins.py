"""How a skipped run's row (engine/rows.py ``DecodeRun``) lands in plot bins
(``timeseries.row_states``), hand-computed: a bin that holds the whole row gets its ticks'
integrals exactly; a bin edge inside it splits the row's KV by the line with its integral and
first moment (``kv_block_s2``), or, without the moment, the line to its last tick's blocks;
a one-tick row holds its own values over its span. The summary's series, the fixed-budget
bins (``BinnedSeries``) and the report's per-replica series read rows the same way."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.metrics.binned import BinnedSeries
from servesim.metrics.timeseries import iteration_spans, ramp_at, row_states, time_weighted

# One run of 4 ticks of 0.5 s from t = 0, 2 sequences, 3 requests queued, KV blocks
# 10, 10, 12, 12 (stepping them gives bin [0, 1] a mean of 10 and bin [1, 2] one of 12):
# kv_block_s = (10 + 10 + 12 + 12) x 0.5 = 22; seq_s = 2 x 2 s = 4; the moment about its
# start sum(blocks x 0.5 x (offset + 0.25)) = 1.25 + 3.75 + 7.5 + 10.5 = 23.
RUN = {
    "replica_id": [0],
    "start_s": [0.0],
    "duration_s": [2.0],
    "num_seqs": [2],
    "num_decode_seqs": [2],
    "num_prefill_tokens": [0],
    "num_preempted": [0],
    "num_queued": [3],
    "num_kv_blocks_used": [12],  # the run's most (its last tick's)
    "repeat": [4],
    "kv_block_s": [22.0],
    "seq_s": [4.0],
    "kv_block_s2": [23.0],
}
STATE = ("num_kv_blocks_used", "num_seqs", "num_queued")


def _log(**changes: list[float]) -> dict[str, np.ndarray]:
    return {k: np.asarray(changes.get(k, v)) for k, v in RUN.items()}


def _bins(it: dict[str, np.ndarray], name: str, window: tuple[float, float], n: int) -> list:
    start = it["start_s"]
    end = start + it["duration_s"]
    seg_end, values, slope = row_states(
        it, start, end, iteration_spans(it["replica_id"], start, end), STATE
    )
    ts = time_weighted(
        start,
        seg_end,
        values[name],
        window=window,
        scale=1.0,
        peak=0.0,
        num_points=n,
        slope=slope if name == "num_kv_blocks_used" else None,
    )
    return list(ts.series)


def test_a_row_across_two_bins_splits_by_the_line_of_its_integral_and_moment() -> None:
    # mean 22 / 2 = 11; moment about the middle 23 - 11 x 2^2 / 2 = 1 = slope x 2^3 / 12, so
    # the line is 11 + 1.5 (t - 1): bins 10.25 and 11.75 (stepping: 10 and 12; the row's
    # mean over both, 11 and 11, before the moment)
    it = _log()
    assert _bins(it, "num_kv_blocks_used", (0.0, 2.0), 2) == [10.25, 11.75]
    assert _bins(it, "num_seqs", (0.0, 2.0), 2) == [2.0, 2.0]
    assert _bins(it, "num_queued", (0.0, 2.0), 2) == [3.0, 3.0]
    # the bins of a long log read the row alike (width 1 s from t = 0, two bins)
    binned = BinnedSeries(num_bins=2, width_s=1.0)
    binned.add(it)
    binned.finish()
    rows = binned.rows()
    assert rows["num_kv_blocks_used"].tolist() == [10.25, 11.75]
    assert rows["num_seqs"].tolist() == [2.0, 2.0]
    assert rows["num_decode_seqs"].tolist() == [4.0, 4.0]  # 8 tokens over 2 s


def test_without_the_moment_the_line_runs_to_the_last_ticks_blocks() -> None:
    # a log written before kv_block_s2: the line from 2 x 11 - 12 = 10 to 12 (slope 1)
    it = {k: v for k, v in _log().items() if k != "kv_block_s2"}
    assert _bins(it, "num_kv_blocks_used", (0.0, 2.0), 2) == [10.5, 11.5]


def test_a_bin_holding_the_whole_row_gets_its_integral() -> None:
    # the row [0.5, 2.5] inside the bin [0, 4]: 22 block-s / 4 s, whatever the line
    it = _log(start_s=[0.5])
    assert _bins(it, "num_kv_blocks_used", (0.0, 4.0), 1) == [5.5]
    assert _bins(it, "num_seqs", (0.0, 4.0), 1) == [1.0]


def test_a_one_tick_row_holds_its_values_over_its_span() -> None:
    # a pipeline engine's first tick: 1 s long, its state cut after 0.6 s by another
    # engine's step (seq_s = 2 x 0.6): 10 blocks over [0, 0.6], so bins of 0.5 s get 10, 2
    it = _log(
        duration_s=[1.0],
        repeat=[1],
        num_kv_blocks_used=[10],
        kv_block_s=[6.0],
        seq_s=[1.2],
        kv_block_s2=[1.8],
    )
    assert _bins(it, "num_kv_blocks_used", (0.0, 1.0), 2) == pytest.approx([10.0, 2.0])
    assert _bins(it, "num_seqs", (0.0, 1.0), 2) == pytest.approx([2.0, 0.4])


def test_a_pipeline_runs_queue_holds_by_its_share_of_the_time() -> None:
    # its ticks' spans add to 1 s of its 2 s (seq_s = 2 x 1): 3 queued x 1/2
    it = _log(seq_s=[2.0], kv_block_s=[11.0], kv_block_s2=[11.5])
    assert _bins(it, "num_queued", (0.0, 2.0), 1) == [1.5]
    assert _bins(it, "num_seqs", (0.0, 2.0), 1) == [1.0]


def test_the_ramp_integrates_to_zero_over_its_interval() -> None:
    # slope 2 on [1, 3]: at t = 2, 2 / 2 x (2 - 1)(2 - 3) = -1; 0 at and outside the ends
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    got = ramp_at(times, np.array([1.0]), np.array([3.0]), np.array([2.0]))
    assert got.tolist() == [0.0, 0.0, -1.0, 0.0, 0.0]
