"""Length distributions: ranges, truncation by resampling, joint sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.lengths import (
    LENGTHS,
    EmpiricalLength,
    FixedLength,
    GaussianCopulaLengths,
    IndependentLengths,
    JointEmpiricalLengths,
    JointLogNormalLengths,
    LogNormalLength,
    NormalLength,
    QuantileLength,
    UniformLength,
    ZipfLength,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return RandomStreams(seed).generator("lengths")


def test_registry_names() -> None:
    expected = ["empirical", "fixed", "lognormal", "normal", "quantile", "uniform", "zipf"]
    assert LENGTHS.names() == expected


def test_fixed_and_uniform_endpoints() -> None:
    assert set(FixedLength(7).sample(_rng(), 100).tolist()) == {7}
    values = UniformLength(3, 6).sample(_rng(), 4000)
    assert set(values.tolist()) == {3, 4, 5, 6}


@settings(max_examples=40, deadline=None)
@given(
    median=st.floats(1, 5000),
    sigma=st.floats(0, 3),
    lo=st.integers(1, 2000),
    width=st.integers(0, 5000),
)
def test_truncated_lognormal_stays_in_range(
    median: float, sigma: float, lo: int, width: int
) -> None:
    hi = lo + width
    try:
        dist = LogNormalLength(median, sigma, lo, hi)
        values = dist.sample(_rng(), 500)
    except ConfigError:
        return  # bounds hold almost none of the mass: refused, not clamped
    assert values.min() >= lo and values.max() <= hi


def test_truncation_resamples_instead_of_clamping() -> None:
    # Normal(100, 50) truncated to [80, 120]: clamping would put ~35% on each bound.
    values = NormalLength(100, 50, 80, 120).sample(_rng(), 20_000)
    assert values.min() >= 80 and values.max() <= 120
    assert np.mean(values == 80) < 0.05 and np.mean(values == 120) < 0.05


def test_impossible_bounds_raise() -> None:
    with pytest.raises(ConfigError, match="bounds"):
        NormalLength(0, 1, 10_000, 20_000).sample(_rng(), 10)
    with pytest.raises(ConfigError):
        UniformLength(10, 5)


def test_lognormal_median() -> None:
    values = LogNormalLength(300, 0.8).sample(_rng(), 50_000)
    assert np.median(values) == pytest.approx(300, rel=0.03)


def test_zipf_range_and_decreasing_frequency() -> None:
    values = ZipfLength(1.2, 10, 100).sample(_rng(), 50_000)
    assert values.min() >= 10 and values.max() <= 100
    counts = np.bincount(values - 10, minlength=91)
    assert counts[0] > counts[1] > counts[5] > counts[50]
    # P(10) / P(11) = 2**1.2
    assert counts[0] / counts[1] == pytest.approx(2**1.2, rel=0.1)


def test_empirical_draws_only_given_values() -> None:
    values = EmpiricalLength([5, 9, 9, 100]).sample(_rng(), 2000)
    assert set(values.tolist()) == {5, 9, 100}
    assert np.mean(values == 9) == pytest.approx(0.5, abs=0.05)


def test_joint_empirical_keeps_rows() -> None:
    prompt = np.array([10, 20, 30])
    output = np.array([1, 2, 3])
    p, o = JointEmpiricalLengths(prompt, output).sample(_rng(), 1000)
    np.testing.assert_array_equal(p, o * 10)


def test_joint_lognormal_correlation_and_bounds() -> None:
    sampler = JointLogNormalLengths(500, 1.0, 200, 0.7, 0.8, (10, 8000), (5, 2000))
    p, o = sampler.sample(_rng(), 20_000)
    assert p.min() >= 10 and p.max() <= 8000 and o.min() >= 5 and o.max() <= 2000
    assert np.corrcoef(np.log(p), np.log(o))[0, 1] == pytest.approx(0.8, abs=0.05)


def test_gaussian_copula_reproduces_quantiles() -> None:
    probs = [0.0, 0.5, 1.0]
    sampler = GaussianCopulaLengths(
        QuantileLength(probs, [1, 100, 1000]), QuantileLength(probs, [1, 10, 20]), 0.5
    )
    p, o = sampler.sample(_rng(), 20_000)
    assert np.mean(p <= 100) == pytest.approx(0.5, abs=0.02)
    assert np.mean(o <= 10) == pytest.approx(0.5, abs=0.03)
    assert p.min() >= 1 and p.max() <= 1000


def test_independent_pairs() -> None:
    p, o = IndependentLengths(FixedLength(3), FixedLength(4)).sample(_rng(), 5)
    assert p.tolist() == [3] * 5 and o.tolist() == [4] * 5
