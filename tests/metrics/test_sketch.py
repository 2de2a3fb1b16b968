"""The latency sketch: exact below its budget, every percentile within relative error alpha
above it (the bound of ``servesim.metrics.sketch``), mergeable chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics.sketch import LatencySketch
from servesim.metrics.stats import (
    PERCENTILES,
    latency_stats,
    weighted_latency_stats,
    weighted_percentile,
)

# Float rounding of log() and the lerp: the bound holds up to a few ulps.
ROUNDING = 1e-12

latencies = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-7, 1e4, allow_nan=False)), min_size=1, max_size=300
)
alphas = st.sampled_from([1e-3, 1e-2, 0.05, 0.3])
quantiles = st.lists(st.floats(0, 100), min_size=1, max_size=5)


def _sketch(values: list[float], alpha: float, chunks: int, weights: list[int] | None = None):
    sketch = LatencySketch(relative_accuracy=alpha, exact_budget=0)  # histogram at once
    v = np.asarray(values)
    w = None if weights is None else np.asarray(weights)
    for index in np.array_split(np.arange(v.size), chunks):
        sketch.add(v[index], None if w is None else w[index])
    return sketch


@settings(max_examples=200, deadline=None)
@given(latencies, alphas, quantiles, st.integers(1, 4))
def test_every_percentile_is_within_alpha_of_the_exact_one(
    values: list[float], alpha: float, qs: list[float], chunks: int
) -> None:
    sketch = _sketch(values, alpha, chunks)
    assert not sketch.is_exact
    for q in [*qs, *PERCENTILES, 0.0, 100.0]:
        exact = float(np.percentile(values, q))
        assert abs(sketch.percentile(q) - exact) <= alpha * exact * (1 + ROUNDING) + 1e-300


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(1e-6, 10.0), st.integers(1, 1000)), min_size=1, max_size=100),
    alphas,
    quantiles,
)
def test_weighted_percentiles_keep_the_bound(
    pairs: list[tuple[float, int]], alpha: float, qs: list[float]
) -> None:
    values, weights = [p[0] for p in pairs], [p[1] for p in pairs]
    sketch = _sketch(values, alpha, 3, weights)
    assert sketch.count == sum(weights)
    for q in qs:
        exact = weighted_percentile(np.asarray(values), np.asarray(weights), q)
        assert abs(sketch.percentile(q) - exact) <= alpha * exact * (1 + ROUNDING)


@settings(max_examples=100, deadline=None)
@given(latencies, st.integers(1, 5))
def test_count_min_max_are_exact_and_moments_close(values: list[float], chunks: int) -> None:
    stats = _sketch(values, 1e-2, chunks).stats()
    want = latency_stats(np.asarray(values))
    assert (stats.count, stats.min_s, stats.max_s) == (want.count, want.min_s, want.max_s)
    assert stats.mean_s == pytest.approx(want.mean_s, rel=1e-9, abs=1e-12)
    assert stats.std_s == pytest.approx(want.std_s, rel=1e-6, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(latencies, st.integers(1, 6), st.booleans())
def test_below_the_budget_statistics_are_identical_to_the_exact_ones(
    values: list[float], chunks: int, weighted: bool
) -> None:
    v = np.asarray(values)
    w = np.arange(1, v.size + 1) % 4 + 1
    sketch = LatencySketch(exact_budget=v.size)
    for index in np.array_split(np.arange(v.size), chunks):
        sketch.add(v[index], w[index] if weighted else None)
    assert sketch.is_exact
    want = weighted_latency_stats(v, w) if weighted else latency_stats(v)
    assert sketch.stats() == want  # field for field, bit for bit


@settings(max_examples=60, deadline=None)
@given(latencies, latencies)
def test_merging_two_sketches_equals_one_sketch_of_both(a: list[float], b: list[float]) -> None:
    left, right = _sketch(a, 1e-2, 1), _sketch(b, 1e-2, 1)
    left.merge(right)
    both = _sketch(a + b, 1e-2, 1)
    for q in PERCENTILES:
        assert left.percentile(q) == both.percentile(q)
    assert left.count == both.count and left.min == both.min and left.max == both.max


def test_the_budget_switches_to_the_histogram_and_the_bound_holds_at_scale() -> None:
    rng = np.random.default_rng(7)
    x = rng.lognormal(-3.0, 1.0, 200_000)
    sketch = LatencySketch(exact_budget=10_000)
    for part in np.array_split(x, 9):
        sketch.add(part)
    assert not sketch.is_exact
    for q in PERCENTILES:
        exact = float(np.percentile(x, q))
        assert abs(sketch.percentile(q) - exact) <= 1e-3 * exact * (1 + ROUNDING)


def test_bad_accuracy_and_empty_sketches_are_refused() -> None:
    with pytest.raises(ValueError, match="relative_accuracy"):
        LatencySketch(relative_accuracy=1.0)
    with pytest.raises(ValueError, match="empty"):
        LatencySketch().percentile(50)
    assert LatencySketch().stats().count == 0
    ignored = LatencySketch(exact_budget=0)
    ignored.add(np.array([1.0, np.inf, np.nan]))
    assert ignored.count == 1 and ignored.percentile(99) == 1.0
