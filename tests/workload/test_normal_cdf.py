"""``normal_cdf`` (math.erf/erfc, no scipy) against ``scipy.special.ndtr``, which the Gaussian
copula presets sampled through before: the same token counts for every preset over many seeds,
so replacing scipy changed no workload."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servesim.workload.lengths import GaussianCopulaLengths, normal_cdf
from servesim.workload.presets import _load

NUM_SEEDS = 120
NUM_DRAWS = 2_000


def test_normal_cdf_hand_values() -> None:
    # Phi(0) = 1/2 exactly; Phi(+-1.959963984540054) = 0.975 / 0.025 (the two-sided 95% point);
    # Phi(-10) = erfc(10 / sqrt 2) / 2 = 7.6198530241605e-24 (tail kept, not rounded to 0).
    got = normal_cdf(np.array([0.0, 1.959963984540054, -1.959963984540054, -10.0]))
    assert got[0] == 0.5
    assert got[1] == pytest.approx(0.975, abs=1e-15)
    assert got[2] == pytest.approx(0.025, abs=1e-15)
    assert got[3] == pytest.approx(7.6198530241605e-24, rel=1e-12)
    assert normal_cdf(np.array([])).shape == (0,)


def test_normal_cdf_agrees_with_scipy() -> None:
    ndtr = pytest.importorskip("scipy.special").ndtr
    z = np.random.default_rng(7).standard_normal(200_000) * 3.0
    ours, theirs = normal_cdf(z), ndtr(z)
    # libm's erf/erfc and Cephes' agree to 1e-14 relative (7e-15 seen, up to 12 ulp of the
    # small lower-tail values), far below what moves a sampled length (next test).
    np.testing.assert_allclose(ours, theirs, rtol=2e-14, atol=0.0)


def _copula_presets() -> list[tuple[str, GaussianCopulaLengths]]:
    return [
        (name, p.lengths)
        for name, p in _load().items()
        if isinstance(p.lengths, GaussianCopulaLengths)
    ]


def test_copula_presets_sample_the_same_lengths_as_with_scipy() -> None:
    ndtr = pytest.importorskip("scipy.special").ndtr
    presets = _copula_presets()
    assert len(presets) >= 5  # sharegpt-vidur, azure-conv, azure-code, ... all copulas
    for name, sampler in presets:
        for seed in range(NUM_SEEDS):
            prompt, output = sampler.sample(np.random.default_rng(seed), NUM_DRAWS)
            # The sampler's own steps, with scipy's ndtr in place of normal_cdf.
            z = np.random.default_rng(seed).standard_normal((2, NUM_DRAWS))
            z2 = sampler.rho * z[0] + math.sqrt(1.0 - sampler.rho * sampler.rho) * z[1]
            want_p = sampler.prompt.from_uniform(ndtr(z[0]))
            want_o = sampler.output.from_uniform(ndtr(z2))
            assert np.array_equal(prompt, want_p), (name, seed)
            assert np.array_equal(output, want_o), (name, seed)
