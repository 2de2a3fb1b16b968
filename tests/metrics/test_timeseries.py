"""Time-weighted integrals and busy-time unions against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics.timeseries import (
    busy_time_by_replica,
    integral_at,
    iteration_spans,
    time_weighted,
)

intervals = st.lists(
    st.tuples(st.floats(0, 10), st.floats(0, 5), st.floats(0, 3)), min_size=1, max_size=20
)


@settings(max_examples=100, deadline=None)
@given(intervals, st.floats(-1, 16))
def test_integral_matches_brute_force(rows: list[tuple[float, float, float]], t: float) -> None:
    a = np.array([r[0] for r in rows])
    b = a + np.array([r[1] for r in rows])
    v = np.array([r[2] for r in rows])
    expected = sum(vi * max(0.0, min(bi, t) - ai) for ai, bi, vi in zip(a, b, v, strict=True))
    assert integral_at(np.array([t]), a, b, v)[0] == pytest.approx(expected, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(intervals)
def test_busy_union_matches_grid(rows: list[tuple[float, float, float]]) -> None:
    a = np.array([r[0] for r in rows])
    b = a + np.array([r[1] for r in rows])
    rid = np.zeros(a.size, dtype=np.int32)
    grid = np.linspace(0, 15, 150_001)
    covered = np.zeros(grid.size, dtype=bool)
    for ai, bi in zip(a, b, strict=True):
        covered |= (grid >= ai) & (grid < bi)
    assert busy_time_by_replica(rid, a, b, [0])[0] == pytest.approx(covered.mean() * 15, abs=2e-3)


def test_spans_stop_at_next_start_of_same_replica() -> None:
    rid = np.array([0, 1, 0])
    start = np.array([0.0, 0.0, 0.5])
    end = np.array([1.0, 1.0, 1.5])
    assert list(iteration_spans(rid, start, end)) == [0.5, 1.0, 1.5]


def test_series_bins_hand_computed() -> None:
    ts = time_weighted(
        np.array([0.0]),
        np.array([1.0]),
        np.array([4.0]),
        window=(0.0, 2.0),
        scale=2.0,
        peak=2.0,
        num_points=2,
    )
    assert ts.series == (2.0, 0.0) and ts.series_t_s == (0.5, 1.5)
    assert ts.mean == pytest.approx(1.0) and ts.max == 2.0
