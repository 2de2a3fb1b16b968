"""``latency_stats``' percentiles are numpy's ``linear`` ones bit for bit, computed without
``np.percentile`` (whose ``np.unique`` imports numpy.ma: servesim/metrics/stats.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from servesim.metrics.stats import PERCENTILES, _linear_percentiles, latency_stats


def _numpy(x: np.ndarray) -> list[float]:
    with np.errstate(invalid="ignore"):  # inf - inf in its lerp
        return [float(v) for v in np.percentile(x, PERCENTILES)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 100, 101, 512, 1000, 4097])
def test_bit_identical_to_np_percentile(n: int) -> None:
    rng = np.random.default_rng(n)
    samples = [
        rng.exponential(0.05, n),
        rng.integers(0, 5, n).astype(np.float64),  # ties
        np.full(n, 0.125),
        rng.lognormal(-3.0, 2.0, n) * rng.choice([-1.0, 1.0], n),
        np.sort(rng.random(n))[::-1].copy(),
    ]
    for x in samples:
        ours = _linear_percentiles(x)
        assert [v.hex() for v in ours] == [v.hex() for v in _numpy(x)]


def test_hand_computed_percentiles() -> None:
    # 5 samples 0..4: index (5-1) x q/100 = 2, 3.6, 3.8, 3.96 -> 2.0, 3.6, 3.8, 3.96
    stats = latency_stats(np.array([4.0, 0.0, 3.0, 1.0, 2.0]))
    assert stats.p50_s == 2.0
    assert stats.p90_s == pytest.approx(3.6, abs=1e-15)
    assert stats.p99_s == pytest.approx(3.96, abs=1e-15)


def test_nan_and_inf_follow_numpy() -> None:
    for x in (np.array([1.0, np.nan, 2.0]), np.array([1.0, np.inf, 2.0, np.inf])):
        assert [repr(v) for v in _linear_percentiles(x)] == [repr(v) for v in _numpy(x)]


def test_latency_stats_does_not_import_numpy_ma() -> None:
    code = (
        "import sys, numpy as np\n"
        "from servesim.metrics.stats import latency_stats\n"
        "latency_stats(np.random.default_rng(0).random(1001))\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
