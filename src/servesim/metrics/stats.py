"""Distribution statistics: mean, std and percentiles, plain and weighted.

Percentiles use numpy's default ``linear`` method (``np.percentile(x, q)``, type 7 of Hyndman
and Fan), the method ``vllm bench serve`` uses, so a simulated p99 compares like for like with a
measured one. Weighted samples (``TokenGapSamples``: one value standing for ``w`` identical
gaps) give exactly the percentile of the expanded sample, computed without expanding it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

# The percentiles every latency metric reports (vllm bench serve reports p99 by default and
# any others via --metric-percentiles; these cover what SLOs are usually written against).
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of one latency distribution, in seconds.

    Attributes:
        count: number of samples (tokens for ITL, requests otherwise).
        mean_s: arithmetic mean (None when there are no samples).
        std_s: population standard deviation (``np.std``, ddof=0, as vllm reports it).
        min_s: smallest sample.
        p50_s, p90_s, p95_s, p99_s: percentiles, numpy ``linear`` method.
        max_s: largest sample.
    """

    count: int
    mean_s: float | None = None
    std_s: float | None = None
    min_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-able mapping, keys in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _lerp(a: float, b: float, t: float) -> float:
    """Linear interpolation written as numpy's percentile does it (bit-identical results)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def _stats(
    count: int, mean: float, std: float, lo: float, hi: float, pct: list[float]
) -> LatencyStats:
    p50, p90, p95, p99 = pct
    return LatencyStats(count, mean, std, lo, p50, p90, p95, p99, hi)


def latency_stats(samples: np.ndarray) -> LatencyStats:
    """Stats of plain samples (one per request)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return LatencyStats(count=0)
    pct = [float(v) for v in np.percentile(x, PERCENTILES)]
    return _stats(int(x.size), float(x.mean()), float(x.std()), float(x.min()), float(x.max()), pct)


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """``np.percentile(np.repeat(values, weights), q)`` without materialising the repeat.

    Args:
        values: sample values (any order).
        weights: positive integer multiplicity of each value.
        q: percentile in [0, 100].
    """
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    cum = np.cumsum(np.asarray(weights, dtype=np.int64)[order])
    return _weighted_percentile_sorted(v, cum, q)


def _weighted_percentile_sorted(v: np.ndarray, cum: np.ndarray, q: float) -> float:
    n = int(cum[-1])
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    # Expanded index k holds the first value whose cumulative count exceeds k.
    v_lo = float(v[np.searchsorted(cum, lo, side="right")])
    v_hi = float(v[np.searchsorted(cum, hi, side="right")])
    return _lerp(v_lo, v_hi, h - lo)


def weighted_latency_stats(values: np.ndarray, weights: np.ndarray) -> LatencyStats:
    """Stats of weighted samples (value ``v`` with weight ``w`` counts as ``w`` samples)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.int64)
    keep = w > 0
    if not keep.all():  # samples are recorded with positive weights: usually no copy needed
        v, w = v[keep], w[keep]
    if v.size == 0:
        return LatencyStats(count=0)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    total = int(cum[-1])
    mean = float(np.dot(v, w) / total)
    std = float(math.sqrt(max(0.0, float(np.dot(w, (v - mean) ** 2)) / total)))
    pct = [_weighted_percentile_sorted(v, cum, q) for q in PERCENTILES]
    return _stats(total, mean, std, float(v[0]), float(v[-1]), pct)
