"""Pydantic configs for length distributions (discriminated unions on ``kind``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from servesim.core.domains import TokenFigure, Tokens, TokensOrZero
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.config_base import StrictConfig
from servesim.workload.datasets import RandomDatasetLengths
from servesim.workload.lengths import (
    EmpiricalLength,
    FixedLength,
    IndependentLengths,
    JointLogNormalLengths,
    LengthDistribution,
    LengthSampler,
    LogNormalLength,
    NormalLength,
    UniformLength,
    ZipfLength,
)
from servesim.workload.presets import get_preset

_MAX = 1 << 20


class FixedDist(StrictConfig):
    """Always ``tokens``."""

    kind: Literal["fixed"] = "fixed"
    tokens: Tokens = Field(description="Token count of every request.")

    def build(self) -> LengthDistribution:
        return FixedLength(self.tokens)


class UniformDist(StrictConfig):
    """Uniform integers on [min_tokens, max_tokens]."""

    kind: Literal["uniform"] = "uniform"
    min_tokens: Tokens = Field(description="Smallest value.")
    max_tokens: Tokens = Field(description="Largest value (inclusive).")

    def build(self) -> LengthDistribution:
        return UniformLength(self.min_tokens, self.max_tokens)


class NormalDist(StrictConfig):
    """Normal, rounded, truncated to [min_tokens, max_tokens] by resampling."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(description="Mean tokens.")
    std: float = Field(ge=0, description="Standard deviation (tokens).")
    min_tokens: Tokens = Field(1, description="Lower bound (resampled below).")
    max_tokens: Tokens = Field(_MAX, description="Upper bound (resampled above).")

    def build(self) -> LengthDistribution:
        return NormalLength(self.mean, self.std, self.min_tokens, self.max_tokens)


class LogNormalDist(StrictConfig):
    """Log-normal with a median and log-space sigma, truncated by resampling."""

    kind: Literal["lognormal"] = "lognormal"
    median_tokens: TokenFigure = Field(description="Median tokens (exp of the log mean).")
    sigma: float = Field(ge=0, description="Standard deviation of log(tokens).")
    min_tokens: Tokens = Field(1, description="Lower bound (resampled below).")
    max_tokens: Tokens = Field(_MAX, description="Upper bound (resampled above).")

    def build(self) -> LengthDistribution:
        return LogNormalLength(self.median_tokens, self.sigma, self.min_tokens, self.max_tokens)


class ZipfDist(StrictConfig):
    """Zipf with exponent ``a`` on [min_tokens, max_tokens]."""

    kind: Literal["zipf"] = "zipf"
    a: float = Field(gt=0, description="Exponent: P(min + k - 1) ∝ k^-a.")
    min_tokens: Tokens = Field(1, description="Smallest (most likely) value.")
    max_tokens: Tokens = Field(8192, description="Largest value.")

    def build(self) -> LengthDistribution:
        return ZipfLength(self.a, self.min_tokens, self.max_tokens)


class EmpiricalDist(StrictConfig):
    """Draw from given values, or from a column (prompt/output) of a trace."""

    kind: Literal["empirical"] = "empirical"
    values: list[int] | None = Field(None, description="Observed token counts.")
    trace: Path | None = Field(None, description="Trace file to take a column from.")
    column: Literal["prompt", "output"] = Field("prompt", description="Which trace column.")
    format: str | None = Field(None, description="Trace format (None: detect).")

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalDist:
        if (self.values is None) == (self.trace is None):
            raise ValueError("give exactly one of values or trace")
        return self

    def build(self) -> LengthDistribution:
        if self.values is not None:
            return EmpiricalLength(self.values)
        from servesim.workload.traces import load_trace  # lazily: the trace readers

        trace = load_trace(self.trace, self.format)  # type: ignore[arg-type]
        return EmpiricalLength(
            trace.prompt_tokens if self.column == "prompt" else trace.output_tokens
        )


LengthDist = Annotated[
    FixedDist | UniformDist | NormalDist | LogNormalDist | ZipfDist | EmpiricalDist,
    Field(discriminator="kind"),
]


class IndependentLengthsConfig(StrictConfig):
    """Prompt and output drawn independently."""

    kind: Literal["independent"] = "independent"
    prompt: LengthDist = Field(description="Prompt-token distribution.")
    output: LengthDist = Field(description="Output-token distribution.")

    def build(self, streams: RandomStreams) -> LengthSampler:
        return IndependentLengths(self.prompt.build(), self.output.build())


class JointLogNormalConfig(StrictConfig):
    """Bivariate log-normal (correlated logs), each side truncated by resampling."""

    kind: Literal["joint_lognormal"] = "joint_lognormal"
    prompt_median: TokenFigure = Field(description="Median prompt tokens.")
    prompt_sigma: float = Field(ge=0, description="Std of log(prompt tokens).")
    output_median: TokenFigure = Field(description="Median output tokens.")
    output_sigma: float = Field(ge=0, description="Std of log(output tokens).")
    rho: float = Field(0.0, gt=-1, lt=1, description="Correlation of the logs.")
    prompt_range: tuple[int, int] = Field((1, _MAX), description="Prompt [min, max].")
    output_range: tuple[int, int] = Field((1, _MAX), description="Output [min, max].")

    def build(self, streams: RandomStreams) -> LengthSampler:
        return JointLogNormalLengths(
            self.prompt_median,
            self.prompt_sigma,
            self.output_median,
            self.output_sigma,
            self.rho,
            self.prompt_range,
            self.output_range,
        )


class TraceLengthsConfig(StrictConfig):
    """(prompt, output) rows sampled jointly from a trace (keeps their correlation)."""

    kind: Literal["trace"] = "trace"
    path: Path = Field(description="Trace file (any format, including length-only ones).")
    format: str | None = Field(None, description="Trace format (None: detect).")
    skip_bad_rows: bool = Field(False, description="Skip and count malformed rows.")
    max_context_tokens: int | None = Field(None, ge=2, description="Cap rows to this context.")

    def build(self, streams: RandomStreams) -> LengthSampler:
        from servesim.workload.traces import load_trace  # lazily: the trace readers

        trace = load_trace(
            self.path,
            self.format,
            skip_bad_rows=self.skip_bad_rows,
            max_context_tokens=self.max_context_tokens,
        )
        return trace.lengths()


class PresetLengthsConfig(StrictConfig):
    """The fitted lengths of a preset (``servesim workload list``)."""

    kind: Literal["preset"] = "preset"
    name: str = Field(description="Preset name.")

    def build(self, streams: RandomStreams) -> LengthSampler:
        return get_preset(self.name).lengths


class RandomLengthsConfig(StrictConfig):
    """vllm bench serve's ``random`` dataset (``--random-input-len`` etc., same defaults)."""

    kind: Literal["random"] = "random"
    input_len: TokensOrZero = Field(1024, description="Mean input tokens (after the prefix).")
    output_len: Tokens = Field(128, description="Mean output tokens.")
    range_ratio: float = Field(
        0.0, ge=0, lt=1, description="Lengths uniform on len x [1 - ratio, 1 + ratio]."
    )
    prefix_len: TokensOrZero = Field(
        0, description="Tokens of one fixed prefix opening every prompt (shared blocks)."
    )

    def build(self, streams: RandomStreams) -> LengthSampler:
        return RandomDatasetLengths(
            self.input_len, self.output_len, self.range_ratio, self.prefix_len
        )


LengthsConfig = Annotated[
    IndependentLengthsConfig
    | JointLogNormalConfig
    | TraceLengthsConfig
    | PresetLengthsConfig
    | RandomLengthsConfig,
    Field(discriminator="kind"),
]


def parse_dist_spec(spec: str) -> LengthDist:
    """Parse a CLI length spec ``kind:key=value,...`` (``lognormal:median_tokens=800,sigma=1``).

    A bare number means ``fixed``: ``512`` is ``fixed:tokens=512``.
    """
    text = spec.strip()
    if text.isdigit():
        return FixedDist(tokens=int(text))
    kind, _, rest = text.partition(":")
    fields: dict[str, object] = {"kind": kind.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError("lengths", spec, f"expected key=value, got {item!r}")
        fields[key.strip()] = value.strip()
    return TypeAdapter(LengthDist).validate_python(fields)
