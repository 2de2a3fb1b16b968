"""Percentiles: plain ones are numpy's linear method; weighted ones equal the expanded sample's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics.stats import latency_stats, weighted_latency_stats, weighted_percentile


def test_linear_percentile_hand_computed() -> None:
    s = latency_stats(np.array([4.0, 1.0, 3.0, 2.0]))
    # rank (n-1)*q: p50 -> 1.5 -> 2.5; p90 -> 2.7 -> 3.7; p99 -> 2.97 -> 3.97
    assert s.p50_s == pytest.approx(2.5)
    assert s.p90_s == pytest.approx(3.7)
    assert s.p99_s == pytest.approx(3.97)
    assert s.mean_s == pytest.approx(2.5)
    assert s.std_s == pytest.approx(np.sqrt(1.25))  # population std, as vllm's np.std


def test_weighted_hand_computed() -> None:
    # expanded: [1, 1, 1, 5] -> p50 rank 1.5 -> 1; p90 rank 2.7 -> 1 + 0.7*4 = 3.8
    v, w = np.array([5.0, 1.0]), np.array([1, 3])
    assert weighted_percentile(v, w, 50) == pytest.approx(1.0)
    assert weighted_percentile(v, w, 90) == pytest.approx(3.8)
    s = weighted_latency_stats(v, w)
    assert s.count == 4 and s.mean_s == pytest.approx(2.0)
    assert s.std_s == pytest.approx(np.sqrt(3.0))


def test_zero_weights_ignored_and_empty() -> None:
    assert weighted_latency_stats(np.array([9.0]), np.array([0])).count == 0
    assert latency_stats(np.array([])).mean_s is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(1, 5)), min_size=1, max_size=30
    ),
    st.floats(0, 100),
)
def test_weighted_equals_expanded(pairs: list[tuple[float, int]], q: float) -> None:
    v = np.array([p[0] for p in pairs])
    w = np.array([p[1] for p in pairs])
    expanded = np.repeat(v, w)
    assert weighted_percentile(v, w, q) == pytest.approx(np.percentile(expanded, q), abs=1e-12)
    s = weighted_latency_stats(v, w)
    assert s.p99_s == pytest.approx(np.percentile(expanded, 99), abs=1e-12)
    assert s.mean_s == pytest.approx(expanded.mean())
    assert s.std_s == pytest.approx(expanded.std(), abs=1e-9)
