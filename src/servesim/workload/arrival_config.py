"""Pydantic configs for arrival processes (a discriminated union on ``kind``, the registry key)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from servesim.core.domains import Cv, RatePerS, RateScale
from servesim.core.errors import ConfigError
from servesim.workload.arrivals import (
    ArrivalProcess,
    ConstantArrivals,
    GammaArrivals,
    ImmediateArrivals,
    OnOffArrivals,
    PoissonArrivals,
    TimeVaryingArrivals,
    TraceArrivals,
    TraceRateArrivals,
)
from servesim.workload.config_base import StrictConfig


class PoissonConfig(StrictConfig):
    """Poisson arrivals (exponential gaps, CV 1)."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: RatePerS = Field(description="Mean arrival rate (requests per second).")

    def build(self) -> ArrivalProcess:
        return PoissonArrivals(self.rate_per_s)


class GammaConfig(StrictConfig):
    """Gamma renewal arrivals: burstiness set by the inter-arrival CV (1 = Poisson)."""

    kind: Literal["gamma"] = "gamma"
    rate_per_s: RatePerS = Field(description="Mean arrival rate (requests per second).")
    cv: Cv = Field(description="Coefficient of variation of inter-arrival gaps.")

    def build(self) -> ArrivalProcess:
        return GammaArrivals(self.rate_per_s, self.cv)


class ConstantConfig(StrictConfig):
    """Evenly spaced arrivals."""

    kind: Literal["constant"] = "constant"
    rate_per_s: RatePerS = Field(description="Arrivals per second, exactly 1/rate apart.")

    def build(self) -> ArrivalProcess:
        return ConstantArrivals(self.rate_per_s)


class ImmediateConfig(StrictConfig):
    """Every request at t = 0 (``vllm bench serve --request-rate inf``); needs a request count."""

    kind: Literal["immediate"] = "immediate"

    def build(self) -> ArrivalProcess:
        return ImmediateArrivals()


class OnOffConfig(StrictConfig):
    """Bursts: Poisson at ``rate_on_per_s`` during exponential ON periods, then OFF periods."""

    kind: Literal["onoff"] = "onoff"
    rate_on_per_s: RatePerS = Field(description="Arrival rate while ON.")
    mean_on_s: float = Field(gt=0, description="Mean ON period (seconds).")
    mean_off_s: float = Field(gt=0, description="Mean OFF period (seconds).")
    rate_off_per_s: float = Field(0.0, ge=0, description="Arrival rate while OFF.")

    def build(self) -> ArrivalProcess:
        return OnOffArrivals(
            self.rate_on_per_s, self.mean_on_s, self.mean_off_s, self.rate_off_per_s
        )


class TimeVaryingConfig(StrictConfig):
    """Non-homogeneous Poisson with a piecewise rate schedule (exact, by inversion)."""

    kind: Literal["time_varying"] = "time_varying"
    times_s: list[float] = Field(min_length=1, description="Knot times, from 0, increasing.")
    rates_per_s: list[float] = Field(min_length=1, description="Rate at each knot (req/s).")
    interpolation: Literal["linear", "step"] = Field(
        "linear", description="Linear between knots, or hold each rate until the next knot."
    )
    period_s: float | None = Field(
        None, gt=0, description="Repeat the schedule with this period (e.g. 86400 for diurnal)."
    )

    def build(self) -> ArrivalProcess:
        return TimeVaryingArrivals(
            self.times_s, self.rates_per_s, self.interpolation, self.period_s
        )


class TraceArrivalConfig(StrictConfig):
    """The arrival times of a trace file (its lengths are ignored), replayed once."""

    kind: Literal["trace"] = "trace"
    path: Path = Field(description="Trace file with arrival times.")
    format: str | None = Field(None, description="Trace format (None: detect).")
    rate_scale: RateScale = Field(1.0, description="Divide arrival times by this factor.")
    skip_bad_rows: bool = Field(False, description="Skip and count malformed rows.")

    def build(self) -> ArrivalProcess:
        from servesim.workload.traces import load_trace  # lazily: the trace readers

        trace = load_trace(
            self.path, self.format, rate_scale=self.rate_scale, skip_bad_rows=self.skip_bad_rows
        )
        if trace.arrival_s is None:
            raise ConfigError("arrival.path", str(self.path), "trace has no arrival times")
        return TraceArrivals(trace.arrival_s)


class TraceRateConfig(StrictConfig):
    """Poisson arrivals following a trace's per-bin rate (its load shape), optionally scaled."""

    kind: Literal["trace_rate"] = "trace_rate"
    path: Path = Field(description="Trace file with arrival times.")
    format: str | None = Field(None, description="Trace format (None: detect).")
    bin_s: float = Field(60.0, gt=0, description="Rate bin width (seconds).")
    rate_scale: RateScale = Field(1.0, description="Multiply every bin's rate by this.")
    periodic: bool = Field(False, description="Repeat the shape instead of stopping.")

    def build(self) -> ArrivalProcess:
        from servesim.workload.traces import load_trace  # lazily: the trace readers

        trace = load_trace(self.path, self.format)
        if trace.arrival_s is None:
            raise ConfigError("arrival.path", str(self.path), "trace has no arrival times")
        return TraceRateArrivals(trace.arrival_s, self.bin_s, self.rate_scale, self.periodic)


ArrivalConfig = Annotated[
    PoissonConfig
    | GammaConfig
    | ConstantConfig
    | ImmediateConfig
    | OnOffConfig
    | TimeVaryingConfig
    | TraceArrivalConfig
    | TraceRateConfig,
    Field(discriminator="kind"),
]
