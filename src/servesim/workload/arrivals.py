"""Arrival processes: when requests arrive.

Each process is a small class behind the ``ArrivalProcess`` protocol and registered by name in
``ARRIVALS``. A process turns a ``numpy.random.Generator`` (from ``RandomStreams``) into an
endless stream of absolute arrival times in seconds, produced in vectorised chunks so that a
million arrivals cost a few numpy calls, not a million Python calls. No process is capped:
Vidur's "Poisson" generator clips inter-arrival gaps, which distorts the tail; here every gap is
drawn from the stated distribution exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry

DEFAULT_CHUNK = 8192


@runtime_checkable
class ArrivalProcess(Protocol):
    """Produces absolute arrival times (s, non-decreasing, starting after t=0)."""

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        """Yield float64 arrays of arrival times; consecutive chunks continue in time."""
        ...

    @property
    def mean_rate_per_s(self) -> float:
        """Long-run mean arrival rate (requests per second)."""
        ...


ARRIVALS: Registry[type] = Registry("arrival process")


def _positive(field: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(field, value, "must be a finite number > 0")
    return float(value)


def _renewal_stream(
    draw_gaps: Callable[[int], np.ndarray], chunk_size: int
) -> Iterator[np.ndarray]:
    """Cumulative sums of i.i.d. gap chunks, continued across chunks."""
    now = 0.0
    while True:
        times = now + np.cumsum(draw_gaps(chunk_size))
        now = float(times[-1])
        yield times


class _FixedRate:
    """Shared by the processes whose rate is one constant: validates and reports it."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = _positive("rate_per_s", rate_per_s)

    @property
    def mean_rate_per_s(self) -> float:
        return self.rate_per_s


@ARRIVALS.register("poisson")
class PoissonArrivals(_FixedRate):
    """Poisson process: exponential inter-arrival gaps with mean ``1/rate_per_s`` (CV = 1)."""

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        scale = 1.0 / self.rate_per_s
        return _renewal_stream(lambda n: rng.exponential(scale, n), chunk_size)


@ARRIVALS.register("gamma")
class GammaArrivals(_FixedRate):
    """Gamma renewal process: mean gap ``1/rate_per_s`` and coefficient of variation ``cv``.

    Burstiness knob used by AlpaServe and DistServe: shape ``k = 1/cv**2``; ``cv=1`` is Poisson,
    ``cv>1`` clusters requests into bursts, ``cv<1`` spreads them more evenly.
    """

    def __init__(self, rate_per_s: float, cv: float) -> None:
        super().__init__(rate_per_s)
        self.cv = _positive("cv", cv)

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        shape = 1.0 / (self.cv * self.cv)
        scale = 1.0 / (self.rate_per_s * shape)
        return _renewal_stream(lambda n: rng.gamma(shape, scale, n), chunk_size)


@ARRIVALS.register("constant")
class ConstantArrivals(_FixedRate):
    """Deterministic arrivals every ``1/rate_per_s`` seconds (first at ``1/rate_per_s``)."""

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        gap = 1.0 / self.rate_per_s
        start = 0
        while True:
            # index * gap (not a running sum) so there is no floating-point drift.
            yield np.arange(start + 1, start + chunk_size + 1, dtype=np.float64) * gap
            start += chunk_size


@ARRIVALS.register("immediate")
class ImmediateArrivals:
    """Every request at t = 0: ``vllm bench serve --request-rate inf`` (all sent at once; a
    ``max_concurrency`` client then holds them until a slot frees). Endless: bound it with a
    request count."""

    @property
    def mean_rate_per_s(self) -> float:
        return math.inf

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        while True:
            yield np.zeros(chunk_size, dtype=np.float64)


@ARRIVALS.register("onoff")
class OnOffArrivals:
    """Bursts: a two-state Markov-modulated Poisson process.

    The source alternates ON periods (exponential, mean ``mean_on_s``) in which requests arrive
    as Poisson at ``rate_on_per_s`` and OFF periods (mean ``mean_off_s``) at ``rate_off_per_s``
    (0 by default). The process starts in an ON period.
    """

    def __init__(
        self,
        rate_on_per_s: float,
        mean_on_s: float,
        mean_off_s: float,
        rate_off_per_s: float = 0.0,
    ) -> None:
        self.rate_on_per_s = _positive("rate_on_per_s", rate_on_per_s)
        self.mean_on_s = _positive("mean_on_s", mean_on_s)
        self.mean_off_s = _positive("mean_off_s", mean_off_s)
        if not (rate_off_per_s >= 0 and math.isfinite(rate_off_per_s)):
            raise ConfigError("rate_off_per_s", rate_off_per_s, "must be a finite number >= 0")
        self.rate_off_per_s = float(rate_off_per_s)

    @property
    def mean_rate_per_s(self) -> float:
        on, off = self.mean_on_s, self.mean_off_s
        return (self.rate_on_per_s * on + self.rate_off_per_s * off) / (on + off)

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        # Enough periods per chunk for about chunk_size arrivals on average.
        per_cycle = self.mean_rate_per_s * (self.mean_on_s + self.mean_off_s)
        num_cycles = max(8, int(chunk_size / max(per_cycle, 1e-9)) + 1)
        now = 0.0
        while True:
            durations = np.empty(2 * num_cycles)
            durations[0::2] = rng.exponential(self.mean_on_s, num_cycles)
            durations[1::2] = rng.exponential(self.mean_off_s, num_cycles)
            rates = np.tile([self.rate_on_per_s, self.rate_off_per_s], num_cycles)
            starts = now + np.concatenate(([0.0], np.cumsum(durations[:-1])))
            # Given its count, a Poisson period's arrivals are uniform order statistics.
            counts = rng.poisson(rates * durations)
            offsets = rng.random(int(counts.sum())) * np.repeat(durations, counts)
            times = np.repeat(starts, counts) + offsets
            times.sort()
            now = float(starts[-1] + durations[-1])
            if times.size:
                yield times


@ARRIVALS.register("time_varying")
class TimeVaryingArrivals:
    """Non-homogeneous Poisson process with a piecewise rate schedule (e.g. a diurnal cycle).

    ``times_s`` (strictly increasing, starting at 0) and ``rates_per_s`` give the rate at each
    knot; ``interpolation`` is ``"linear"`` (piecewise-linear between knots) or ``"step"`` (the
    rate holds until the next knot). With ``period_s`` the schedule repeats with that period
    (``period_s`` >= the last knot); otherwise the last rate holds forever.

    Exact by inversion of the cumulative intensity Λ(t): unit-rate Poisson arrivals E_1 < E_2 <
    ... map to t_i = Λ⁻¹(E_i), solved in closed form per segment (Λ is piecewise quadratic), so
    no rate cap or thinning bound is needed.
    """

    def __init__(
        self,
        times_s: Sequence[float],
        rates_per_s: Sequence[float],
        interpolation: str = "linear",
        period_s: float | None = None,
    ) -> None:
        knots = np.asarray(times_s, dtype=np.float64)
        rates = np.asarray(rates_per_s, dtype=np.float64)
        if knots.ndim != 1 or knots.size == 0 or knots.size != rates.size:
            raise ConfigError("times_s", list(times_s), "needs one rate per knot (>= 1 knot)")
        if knots[0] != 0.0 or np.any(np.diff(knots) <= 0):
            raise ConfigError("times_s", list(times_s), "must start at 0 and strictly increase")
        if np.any(rates < 0) or not np.all(np.isfinite(rates)):
            raise ConfigError("rates_per_s", list(rates_per_s), "must be finite and >= 0")
        if interpolation not in ("linear", "step"):
            raise ConfigError("interpolation", interpolation, "must be 'linear' or 'step'")
        if period_s is not None and not period_s >= knots[-1]:
            raise ConfigError("period_s", period_s, f"must be >= the last knot {knots[-1]}")
        if period_s is not None and period_s > knots[-1]:
            # The segment from the last knot to the period end: closes the cycle (linear) or
            # holds the last rate (step).
            knots = np.append(knots, period_s)
            rates = np.append(rates, rates[0] if interpolation == "linear" else rates[-1])
        self.knots_s, self.rates_per_s = knots, rates
        self.interpolation = interpolation
        self.period_s = period_s
        slope = (
            np.diff(rates) / np.diff(knots)
            if interpolation == "linear"
            else np.zeros(knots.size - 1)
        )
        self._slope = slope
        seg_area = rates[:-1] * np.diff(knots) + 0.5 * slope * np.diff(knots) ** 2
        self._cum = np.concatenate(([0.0], np.cumsum(seg_area)))
        if self.period_s is None and rates[-1] == 0 and self._cum[-1] == 0:
            raise ConfigError("rates_per_s", list(rates_per_s), "all zero: no request would arrive")
        if self.period_s is not None and self._cum[-1] <= 0:
            raise ConfigError("rates_per_s", list(rates_per_s), "all zero: no request would arrive")

    @property
    def mean_rate_per_s(self) -> float:
        """Per period if periodic; else the rate held after the last knot, or, when that is
        0 (a finite stream), the mean over the schedule."""
        if self.period_s is not None:
            return float(self._cum[-1] / self.period_s)
        if self.rates_per_s[-1] > 0 or self.knots_s[-1] == 0:
            return float(self.rates_per_s[-1])
        return float(self._cum[-1] / self.knots_s[-1])

    def cumulative_intensity(self, t_s: np.ndarray | float) -> np.ndarray:
        """Λ(t): the expected number of arrivals in [0, t]."""
        t = np.asarray(t_s, dtype=np.float64)
        cycles = np.zeros_like(t)
        if self.period_s is not None:
            cycles, t = np.divmod(t, self.period_s)
        seg = np.clip(np.searchsorted(self.knots_s, t, side="right") - 1, 0, self.knots_s.size - 1)
        tau = t - self.knots_s[seg]
        slope = np.append(self._slope, 0.0)[seg]
        inside = self._cum[seg] + self.rates_per_s[seg] * tau + 0.5 * slope * tau * tau
        return cycles * self._cum[-1] + inside

    def _invert(self, area: np.ndarray) -> np.ndarray:
        cycles = np.zeros_like(area)
        if self.period_s is not None:
            cycles, area = np.divmod(area, self._cum[-1])
        seg = np.searchsorted(self._cum, area, side="right") - 1
        seg = np.clip(seg, 0, self.knots_s.size - 1)
        left = area - self._cum[seg]
        r0 = self.rates_per_s[seg]
        slope = np.append(self._slope, 0.0)[seg]
        # Solve r0*tau + slope*tau^2/2 = left; the 2*left/(r0 + root) form is stable for
        # small slopes, and flat segments divide directly (a rate of 0 forever gives inf).
        root = np.sqrt(np.maximum(r0 * r0 + 2.0 * slope * left, 0.0))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            sloped = np.where(r0 + root > 0, 2.0 * left / (r0 + root), np.inf)
            tau = np.where(slope == 0, left / r0, sloped)
        tau = np.where(left <= 0, 0.0, tau)  # exactly at a knot (even where the rate is 0)
        period = self.period_s if self.period_s is not None else 0.0
        return cycles * period + self.knots_s[seg] + tau

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        unit_time = 0.0
        while True:
            unit = unit_time + np.cumsum(rng.exponential(1.0, chunk_size))
            unit_time = float(unit[-1])
            times = self._invert(unit)
            finite = times[np.isfinite(times)]
            if finite.size:
                yield finite
            if finite.size < times.size:
                return  # the rate fell to 0 for good: the stream is finite


@ARRIVALS.register("trace_rate")
class TraceRateArrivals(TimeVaryingArrivals):
    """Poisson arrivals following a trace's rate, bin by bin (a step schedule).

    Keeps a real trace's slow variation (per-minute load, a diurnal shape) while drawing fresh
    Poisson arrivals inside each bin, so the shape can be replayed at another mean rate
    (``rate_scale`` multiplies every bin's rate) or repeated (``periodic``).
    """

    def __init__(
        self,
        times_s: Sequence[float] | np.ndarray,
        bin_s: float = 60.0,
        rate_scale: float = 1.0,
        periodic: bool = False,
    ) -> None:
        times = np.asarray(times_s, dtype=np.float64)
        _positive("bin_s", bin_s)
        _positive("rate_scale", rate_scale)
        if times.size < 2 or not np.all(np.isfinite(times)) or times[0] < 0:
            raise ConfigError("times_s", f"{times.size} values", "need >= 2 finite times >= 0")
        num_bins = max(1, math.ceil((times[-1] - times[0]) / bin_s))
        counts, _edges = np.histogram(times - times[0], bins=num_bins, range=(0, num_bins * bin_s))
        rates = counts / bin_s * rate_scale
        knots = np.arange(num_bins) * bin_s
        # The schedule ends at rate 0 after the last bin unless it repeats.
        if periodic:
            super().__init__(knots, rates, "step", period_s=num_bins * bin_s)
        else:
            super().__init__(np.append(knots, num_bins * bin_s), np.append(rates, 0.0), "step")
        self.bin_s = bin_s


@ARRIVALS.register("trace")
class TraceArrivals:
    """Given arrival times (e.g. a real trace's), replayed once: real burstiness, any lengths.

    ``times_s`` must be non-decreasing and >= 0; the stream ends with the last time.
    """

    def __init__(self, times_s: Sequence[float] | np.ndarray) -> None:
        times = np.asarray(times_s, dtype=np.float64)
        if times.ndim != 1 or times.size == 0:
            raise ConfigError("times_s", f"{times.size} values", "need >= 1 arrival time")
        if not np.all(np.isfinite(times)) or times[0] < 0 or np.any(np.diff(times) < 0):
            raise ConfigError("times_s", "arrival times", "must be finite, >= 0, non-decreasing")
        self.times_s = times

    @property
    def mean_rate_per_s(self) -> float:
        span = float(self.times_s[-1] - self.times_s[0])
        return (self.times_s.size - 1) / span if span > 0 else math.inf

    def stream(
        self, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        for start in range(0, self.times_s.size, chunk_size):
            yield self.times_s[start : start + chunk_size]


def arrival_times(
    process: ArrivalProcess, rng: np.random.Generator, num: int, chunk_size: int = DEFAULT_CHUNK
) -> np.ndarray:
    """The first ``num`` arrival times of ``process`` as one array (for tests and small uses)."""
    parts: list[np.ndarray] = []
    have = 0
    for chunk in process.stream(rng, chunk_size):
        parts.append(chunk[: num - have])
        have += parts[-1].size
        if have >= num:
            break
    return np.concatenate(parts) if parts else np.empty(0)
