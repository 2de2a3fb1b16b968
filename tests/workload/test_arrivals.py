"""Arrival processes: rates, burstiness and exactness against hand-computed expectations."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.core.rng import RandomStreams
from servesim.workload.arrivals import (
    ARRIVALS,
    ArrivalProcess,
    ConstantArrivals,
    GammaArrivals,
    OnOffArrivals,
    PoissonArrivals,
    TimeVaryingArrivals,
    TraceRateArrivals,
    arrival_times,
)
from servesim.workload.config import ArrivalConfig


def _rng(name: str = "test", seed: int = 0) -> np.random.Generator:
    return RandomStreams(seed).generator(name)


def _cv(times: np.ndarray) -> float:
    gaps = np.diff(np.concatenate(([0.0], times)))
    return float(gaps.std() / gaps.mean())


def test_registry_has_all_processes() -> None:
    expected = [
        "constant",
        "gamma",
        "immediate",
        "onoff",
        "poisson",
        "time_varying",
        "trace",
        "trace_rate",
    ]
    assert ARRIVALS.names() == expected
    # Every registered process has a config kind of the same name, and vice versa.
    union = typing.get_args(typing.get_args(ArrivalConfig)[0])
    assert sorted(m.model_fields["kind"].default for m in union) == expected
    assert ARRIVALS.get("poisson") is PoissonArrivals
    with pytest.raises(UnknownNameError, match="did you mean poisson"):
        ARRIVALS.get("poison")


def test_every_process_follows_protocol() -> None:
    processes = [
        PoissonArrivals(1.0),
        GammaArrivals(1.0, 2.0),
        ConstantArrivals(1.0),
        OnOffArrivals(5.0, 1.0, 1.0),
        TimeVaryingArrivals([0, 10], [1, 2]),
    ]
    for process in processes:
        assert isinstance(process, ArrivalProcess)
        times = arrival_times(process, _rng(), 5000, chunk_size=300)  # many chunks
        assert times.size == 5000
        assert np.all(np.diff(times) >= 0) and times[0] >= 0


def test_poisson_10_per_s_mean_gap_and_cv() -> None:
    times = arrival_times(PoissonArrivals(10.0), _rng(), 10_000)
    gaps = np.diff(np.concatenate(([0.0], times)))
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert _cv(times) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("cv", [0.5, 1.0, 4.0])
def test_gamma_cv_as_configured(cv: float) -> None:
    times = arrival_times(GammaArrivals(5.0, cv), _rng(seed=1), 100_000)
    assert _cv(times) == pytest.approx(cv, rel=0.10)
    assert times.size / times[-1] == pytest.approx(5.0, rel=0.10)


def test_constant_is_exact() -> None:
    times = arrival_times(ConstantArrivals(4.0), _rng(), 10, chunk_size=3)
    np.testing.assert_allclose(times, np.arange(1, 11) * 0.25)


def test_onoff_mean_rate_and_burstiness() -> None:
    process = OnOffArrivals(rate_on_per_s=20.0, mean_on_s=2.0, mean_off_s=8.0)
    assert process.mean_rate_per_s == pytest.approx(4.0)
    times = arrival_times(process, _rng(), 50_000)
    assert times.size / times[-1] == pytest.approx(4.0, rel=0.05)
    assert _cv(times) > 1.5  # bursts: many short gaps, a few long ones


def _mean_count(process: TimeVaryingArrivals, until_s: float, runs: int = 200) -> float:
    counts = []
    for seed in range(runs):
        total = 0
        for chunk in process.stream(_rng(seed=seed), 4096):
            total += int(np.sum(chunk <= until_s))
            if chunk[-1] > until_s:
                break
        counts.append(total)
    return float(np.mean(counts))


def test_time_varying_linear_ramp_integrates() -> None:
    # Rate 0 -> 10 req/s over 100 s: ∫ = 500 expected arrivals in [0, 100].
    process = TimeVaryingArrivals([0.0, 100.0], [0.0, 10.0])
    assert process.cumulative_intensity(100.0) == pytest.approx(500.0)
    assert _mean_count(process, 100.0) == pytest.approx(500.0, rel=0.02)
    # Half of the area lies in the last 29.3 s (sqrt(1/2) of the ramp).
    assert _mean_count(process, 100 * np.sqrt(0.5)) == pytest.approx(250.0, rel=0.03)


def test_time_varying_step_periodic_diurnal() -> None:
    # 1 req/s for 10 s, then 5 req/s for 10 s, repeating every 20 s: 60 per period.
    process = TimeVaryingArrivals([0.0, 10.0], [1.0, 5.0], "step", period_s=20.0)
    assert process.mean_rate_per_s == pytest.approx(3.0)
    assert process.cumulative_intensity(40.0) == pytest.approx(120.0)
    assert _mean_count(process, 40.0, runs=100) == pytest.approx(120.0, rel=0.03)
    times = arrival_times(process, _rng(), 60_000)
    phase = np.mod(times, 20.0)
    in_high = np.mean(phase >= 10.0)
    assert in_high == pytest.approx(5 / 6, abs=0.01)


def test_time_varying_inversion_matches_intensity() -> None:
    process = TimeVaryingArrivals([0, 3, 7, 12], [2.0, 0.5, 6.0, 1.0], period_s=15.0)
    t = np.linspace(0, 100, 333)
    np.testing.assert_allclose(process._invert(process.cumulative_intensity(t)), t, atol=1e-9)


def test_time_varying_finite_when_rate_drops_to_zero() -> None:
    process = TimeVaryingArrivals([0.0, 10.0], [2.0, 0.0])
    chunks = list(process.stream(_rng(), 64))
    times = np.concatenate(chunks)
    assert times.max() <= 10.0
    assert 0 < times.size < 40  # expected 10


@pytest.mark.parametrize(
    "make",
    [
        lambda: PoissonArrivals(0.0),
        lambda: GammaArrivals(1.0, -1.0),
        lambda: OnOffArrivals(1.0, 0.0, 1.0),
        lambda: TimeVaryingArrivals([1.0, 2.0], [1.0, 1.0]),
        lambda: TimeVaryingArrivals([0.0, 2.0], [1.0, -1.0]),
        lambda: TimeVaryingArrivals([0.0, 2.0], [0.0, 0.0], period_s=2.0),
    ],
)
def test_bad_parameters_raise_config_error(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def test_determinism_and_independent_streams() -> None:
    a = arrival_times(PoissonArrivals(3.0), RandomStreams(5).generator("workload.arrivals"), 100)
    b = arrival_times(PoissonArrivals(3.0), RandomStreams(5).generator("workload.arrivals"), 100)
    c = arrival_times(PoissonArrivals(3.0), RandomStreams(5).generator("workload.other"), 100)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Independent streams: no correlation between the gaps of two components.
    ga, gc = np.diff(a), np.diff(c)
    assert abs(np.corrcoef(ga, gc)[0, 1]) < 0.3


def test_trace_rate_follows_bins_and_scales() -> None:
    # 60 arrivals in the first minute, 0 in the second, 120 in the third.
    times = np.concatenate([np.linspace(0, 59, 60), np.linspace(120, 179.5, 120)])
    process = TraceRateArrivals(times, bin_s=60.0)
    assert process.rates_per_s.tolist() == [1.0, 0.0, 2.0, 0.0]
    assert process.mean_rate_per_s == pytest.approx(1.0)  # 180 over 180 s
    counts = []
    for seed in range(50):
        drawn = np.concatenate(list(process.stream(_rng(seed=seed), 1024)))
        assert drawn.max() <= 180.0
        assert not np.any((drawn > 60.0) & (drawn < 120.0))
        counts.append(drawn.size)
    assert np.mean(counts) == pytest.approx(180, rel=0.03)
    doubled = TraceRateArrivals(times, bin_s=60.0, rate_scale=2.0, periodic=True)
    assert doubled.mean_rate_per_s == pytest.approx(2.0)
    assert arrival_times(doubled, _rng(), 5000)[-1] > 180.0  # repeats
