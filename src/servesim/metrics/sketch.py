"""Mergeable quantile sketches with a proven relative-error bound, exact while they are small.

A long run's latencies do not fit in memory as raw samples; ``LatencySketch`` keeps them
exactly up to ``exact_budget`` samples (so a small run's statistics are byte-identical to
``servesim.metrics.stats``) and above it switches to a **log-bucket histogram** in the style of
DDSketch (Masson, Rim and Lee, VLDB 2019):

- with ``gamma = (1 + alpha) / (1 - alpha)``, a positive value ``x`` goes to bucket
  ``i = ceil(log_gamma(x))``, which holds ``(gamma^(i-1), gamma^i]``; the bucket stands for
  ``2 gamma^i / (gamma + 1)``, within a factor ``1 +- alpha`` of every value in it. Zero has its
  own exact bucket; negative values are mirrored.
- The sample of rank ``k`` (0-based, sorted) is estimated by the value of the bucket that holds
  rank ``k``, clamped to the exact ``[min, max]``: ``|est_k - x_k| <= alpha * |x_k|``.
- Percentiles follow numpy's ``linear`` method: ``x_lo + t (x_hi - x_lo)`` with the ranks
  ``lo, hi`` around ``h = (n - 1) q / 100``. Interpolating two estimates that are each within
  ``alpha`` relative of ``x_lo`` and ``x_hi`` gives a value within ``alpha * |p|`` of the true
  percentile ``p`` when ``x_lo`` and ``x_hi`` share a sign (latencies are never negative).

**Bound**: every percentile is within relative error ``alpha`` (``DEFAULT_RELATIVE_ACCURACY``,
0.1%), up to float rounding (~1e-12 relative); count, min and max are exact; mean and std are
streamed exactly (Chan et al.'s pairwise update), up to float summation order. Sketches merge
by adding bucket counts, so chunks of a table can be summarised one at a time.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.metrics.stats import (
    PERCENTILES,
    LatencyStats,
    _lerp,
    latency_stats,
    weighted_latency_stats,
    weighted_percentile,
)

# 0.1% relative error: far below what a calibrated cost model can resolve, and about 1.2k
# buckets per decade of values spanned (a few hundred KB for a run's whole latency range).
DEFAULT_RELATIVE_ACCURACY = 1e-3
# Raw samples kept before the histogram takes over (8 bytes each, 16 with weights).
DEFAULT_EXACT_BUDGET = 1 << 16


class _BucketStore:
    """Counts per integer bucket index, a dense int64 array from ``offset``."""

    __slots__ = ("counts", "offset")

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.offset = 0

    def add(self, index: np.ndarray, weights: np.ndarray) -> None:
        """Add ``weights[j]`` to bucket ``index[j]``."""
        if index.size == 0:
            return
        lo, hi = int(index.min()), int(index.max())
        self._cover(lo, hi)
        # bincount sums in float64: exact for counts below 2**53.
        add = np.bincount(index - lo, weights=weights.astype(np.float64))
        start = lo - self.offset
        self.counts[start : start + add.size] += np.rint(add).astype(np.int64)

    def _cover(self, lo: int, hi: int) -> None:
        if self.counts.size == 0:
            self.counts = np.zeros(hi - lo + 1, dtype=np.int64)
            self.offset = lo
            return
        new_lo = min(lo, self.offset)
        new_hi = max(hi, self.offset + self.counts.size - 1)
        if new_lo == self.offset and new_hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        grown[self.offset - new_lo : self.offset - new_lo + self.counts.size] = self.counts
        self.counts, self.offset = grown, new_lo

    def merge(self, other: _BucketStore) -> None:
        """Add ``other``'s counts."""
        nonzero = np.flatnonzero(other.counts)
        self.add(nonzero + other.offset, other.counts[nonzero])

    @property
    def total(self) -> int:
        """Sum of all counts."""
        return int(self.counts.sum())


class LatencySketch:
    """Streaming statistics of a (weighted) sample: exact while small, bounded error after.

    Args:
        relative_accuracy: ``alpha`` of the bound (module docstring), in (0, 1).
        exact_budget: raw samples kept before switching to the histogram (default
            ``DEFAULT_EXACT_BUDGET``).
    """

    __slots__ = (
        "_alpha",
        "_budget",
        "_log_gamma",
        "_m2",
        "_mean",
        "_neg",
        "_pos",
        "_raw_size",
        "_raw_v",
        "_raw_w",
        "_zeros",
        "count",
        "is_weighted",
        "max",
        "min",
    )

    def __init__(
        self,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        exact_budget: int | None = None,
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        self._alpha = relative_accuracy
        self._log_gamma = math.log((1 + relative_accuracy) / (1 - relative_accuracy))
        self._budget = DEFAULT_EXACT_BUDGET if exact_budget is None else exact_budget
        self._raw_v: list[np.ndarray] | None = []  # None once the histogram took over
        self._raw_w: list[np.ndarray] = []
        self._raw_size = 0
        self._pos, self._neg = _BucketStore(), _BucketStore()
        self._zeros = 0
        self.count = 0
        self._mean = self._m2 = 0.0
        self.min, self.max = math.inf, -math.inf
        self.is_weighted = False

    @property
    def relative_accuracy(self) -> float:
        """``alpha``: the relative error bound of every percentile once not exact."""
        return self._alpha

    @property
    def is_exact(self) -> bool:
        """Whether every sample is still held raw (statistics identical to ``stats``)."""
        return self._raw_v is not None

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add samples; ``weights``: positive integer multiplicities. Non-finite values are
        ignored (they would have no bucket)."""
        v = np.asarray(values, dtype=np.float64)
        if weights is None:
            w = np.ones(v.size, dtype=np.int64)
        else:
            self.is_weighted = True
            w = np.asarray(weights, dtype=np.int64)
            keep = w > 0
            if not keep.all():
                v, w = v[keep], w[keep]
        finite = np.isfinite(v)
        if not finite.all():  # never bucket inf/NaN (completed requests have finite times)
            v, w = v[finite], w[finite]
        if v.size == 0:
            return
        self._update_moments(v, w)
        if self._raw_v is not None:
            self._raw_v.append(v.copy())
            self._raw_w.append(w.copy())
            self._raw_size += v.size
            if self._raw_size > self._budget:
                self._to_histogram()
            return
        self._bucket(v, w)

    def _update_moments(self, v: np.ndarray, w: np.ndarray) -> None:
        n_b = int(w.sum())
        mean_b = float(np.dot(v, w) / n_b)
        m2_b = float(np.dot(w, (v - mean_b) ** 2))
        n_a, n = self.count, self.count + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * n_a * n_b / n
        self.count = n
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))

    def _to_histogram(self) -> None:
        assert self._raw_v is not None
        raw_v, raw_w = self._raw_v, self._raw_w
        self._raw_v, self._raw_w, self._raw_size = None, [], 0
        for v, w in zip(raw_v, raw_w, strict=True):
            self._bucket(v, w)

    def _bucket(self, v: np.ndarray, w: np.ndarray) -> None:
        pos, neg = v > 0, v < 0
        self._zeros += int(w[v == 0].sum())
        for store, mask, sign in ((self._pos, pos, 1.0), (self._neg, neg, -1.0)):
            if mask.any():
                index = np.ceil(np.log(sign * v[mask]) / self._log_gamma).astype(np.int64)
                store.add(index, w[mask])

    def merge(self, other: LatencySketch) -> None:
        """Add every sample ``other`` holds (same relative accuracy)."""
        if other._alpha != self._alpha:
            raise ValueError("cannot merge sketches of different relative accuracy")
        if other.count == 0:
            return
        if other._raw_v is not None:
            for v, w in zip(other._raw_v, other._raw_w, strict=True):
                self.add(v, w if other.is_weighted else None)
            return
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        delta = other._mean - self._mean
        mean, m2 = self._mean + delta * n_b / n, self._m2 + other._m2 + delta**2 * n_a * n_b / n
        lo, hi = min(self.min, other.min), max(self.max, other.max)
        if self._raw_v is not None:
            self._to_histogram()
        self._pos.merge(other._pos)
        self._neg.merge(other._neg)
        self._zeros += other._zeros
        self.count, self._mean, self._m2, self.min, self.max = n, mean, m2, lo, hi
        self.is_weighted |= other.is_weighted

    def _rank_value(self, k: int) -> float:
        """Estimate of the sample of 0-based rank ``k`` (module docstring)."""
        num_neg = self._neg.total
        if k < num_neg:  # negative buckets, most negative (largest index) first
            cum = np.cumsum(self._neg.counts[::-1])
            j = int(np.searchsorted(cum, k, side="right"))
            index = self._neg.offset + self._neg.counts.size - 1 - j
            value = -self._bucket_value(index)
        elif k < num_neg + self._zeros:
            value = 0.0
        else:
            cum = np.cumsum(self._pos.counts)
            j = int(np.searchsorted(cum, k - num_neg - self._zeros, side="right"))
            value = self._bucket_value(self._pos.offset + j)
        return min(max(value, self.min), self.max)

    def _bucket_value(self, index: int) -> float:
        gamma = math.exp(self._log_gamma)
        return 2.0 * math.exp(index * self._log_gamma) / (gamma + 1.0)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (numpy ``linear``); exact while ``is_exact``."""
        if self.count == 0:
            raise ValueError("percentile of an empty sketch")
        if self._raw_v is not None:
            return _exact_percentile(self._raw_arrays(), q, self.is_weighted)
        h = (self.count - 1) * q / 100.0
        lo = math.floor(h)
        hi = min(lo + 1, self.count - 1)
        return _lerp(self._rank_value(lo), self._rank_value(hi), h - lo)

    def _raw_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._raw_v is not None
        if not self._raw_v:
            return np.empty(0), np.empty(0, dtype=np.int64)
        return np.concatenate(self._raw_v), np.concatenate(self._raw_w)

    def stats(self) -> LatencyStats:
        """``LatencyStats`` of the samples: identical to ``latency_stats`` /
        ``weighted_latency_stats`` while exact; within the bound after."""
        if self.count == 0:
            return LatencyStats(count=0)
        if self._raw_v is not None:
            v, w = self._raw_arrays()
            return weighted_latency_stats(v, w) if self.is_weighted else latency_stats(v)
        std = math.sqrt(max(0.0, self._m2 / self.count))
        p50, p90, p95, p99 = (self.percentile(q) for q in PERCENTILES)
        return LatencyStats(self.count, self._mean, std, self.min, p50, p90, p95, p99, self.max)


def _exact_percentile(arrays: tuple[np.ndarray, np.ndarray], q: float, weighted: bool) -> float:
    v, w = arrays
    return weighted_percentile(v, w, q) if weighted else float(np.percentile(v, q))
