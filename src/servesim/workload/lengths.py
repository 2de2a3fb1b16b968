"""Length distributions: how many prompt and output tokens each request has.

A ``LengthDistribution`` draws one dimension (prompt or output tokens) as an int64 array; a
``LengthSampler`` draws (prompt, output) pairs, either independently or jointly so that the
correlation of a real trace is kept. Bounded distributions are truncated by *resampling* the
draws that fall outside ``[min_tokens, max_tokens]`` (never by clamping, which would pile
probability mass on the bounds). Everything is vectorised over the requested count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry

LENGTHS: Registry[type] = Registry("length distribution")

# Resampling gives up when fewer than this fraction of draws land inside the bounds: the
# distribution and its bounds barely overlap, which is a configuration mistake.
_MIN_ACCEPTANCE = 1e-3
_MAX_ZIPF_SUPPORT = 10_000_000


@runtime_checkable
class LengthDistribution(Protocol):
    """One dimension of request length (tokens), sampled as an int64 array >= 1."""

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        """``num`` token counts."""
        ...


@runtime_checkable
class LengthSampler(Protocol):
    """(prompt, output) token counts, possibly correlated."""

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        """Two int64 arrays of length ``num``: prompt tokens, output tokens."""
        ...


def _check_bounds(min_tokens: int, max_tokens: int) -> None:
    if min_tokens < 1:
        raise ConfigError("min_tokens", min_tokens, "must be >= 1")
    if max_tokens < min_tokens:
        raise ConfigError("max_tokens", max_tokens, f"must be >= min_tokens={min_tokens}")


def truncated_draw(
    draw: Callable[[int], np.ndarray],
    rng_num: int,
    min_tokens: int,
    max_tokens: int,
    what: str = "distribution",
) -> np.ndarray:
    """Draw ``rng_num`` rounded values, resampling those outside ``[min_tokens, max_tokens]``."""
    out = np.empty(rng_num, dtype=np.int64)
    todo = np.arange(rng_num)
    num_drawn = 0
    while todo.size:
        values = np.rint(draw(todo.size))
        num_drawn += todo.size
        ok = (values >= min_tokens) & (values <= max_tokens)
        out[todo[ok]] = values[ok].astype(np.int64)
        todo = todo[~ok]
        if todo.size and num_drawn > 1000 and (rng_num - todo.size) < _MIN_ACCEPTANCE * num_drawn:
            raise ConfigError(
                what, f"[{min_tokens}, {max_tokens}]", "bounds hold < 0.1% of the distribution"
            )
    return out


@LENGTHS.register("fixed")
class FixedLength:
    """Every request has exactly ``tokens`` tokens."""

    def __init__(self, tokens: int) -> None:
        if tokens < 1:
            raise ConfigError("tokens", tokens, "must be >= 1")
        self.tokens = int(tokens)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return np.full(num, self.tokens, dtype=np.int64)


@LENGTHS.register("uniform")
class UniformLength:
    """Integers uniform on ``[min_tokens, max_tokens]`` inclusive."""

    def __init__(self, min_tokens: int, max_tokens: int) -> None:
        _check_bounds(min_tokens, max_tokens)
        self.min_tokens, self.max_tokens = int(min_tokens), int(max_tokens)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return rng.integers(self.min_tokens, self.max_tokens, size=num, endpoint=True)


@LENGTHS.register("normal")
class NormalLength:
    """Normal(mean, std) rounded, truncated to ``[min_tokens, max_tokens]`` by resampling."""

    def __init__(self, mean: float, std: float, min_tokens: int = 1, max_tokens: int = 1 << 20):
        if not std >= 0:
            raise ConfigError("std", std, "must be >= 0")
        _check_bounds(min_tokens, max_tokens)
        self.mean, self.std = float(mean), float(std)
        self.min_tokens, self.max_tokens = int(min_tokens), int(max_tokens)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return truncated_draw(
            lambda n: rng.normal(self.mean, self.std, n),
            num,
            self.min_tokens,
            self.max_tokens,
            "normal length",
        )


@LENGTHS.register("lognormal")
class LogNormalLength:
    """Log-normal with median ``median_tokens`` and log-space std ``sigma``, truncated."""

    def __init__(
        self, median_tokens: float, sigma: float, min_tokens: int = 1, max_tokens: int = 1 << 20
    ) -> None:
        if not median_tokens > 0:
            raise ConfigError("median_tokens", median_tokens, "must be > 0")
        if not sigma >= 0:
            raise ConfigError("sigma", sigma, "must be >= 0")
        _check_bounds(min_tokens, max_tokens)
        self.mu, self.sigma = math.log(median_tokens), float(sigma)
        self.min_tokens, self.max_tokens = int(min_tokens), int(max_tokens)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return truncated_draw(
            lambda n: rng.lognormal(self.mu, self.sigma, n),
            num,
            self.min_tokens,
            self.max_tokens,
            "lognormal length",
        )


@LENGTHS.register("zipf")
class ZipfLength:
    """Zipf on ``min_tokens..max_tokens``: P(min_tokens + k - 1) ∝ k**-a, k >= 1.

    Sampled exactly by inverse CDF over the finite support (no rejection loop, any ``a > 0``).
    """

    def __init__(self, a: float, min_tokens: int = 1, max_tokens: int = 8192) -> None:
        if not a > 0:
            raise ConfigError("a", a, "must be > 0")
        _check_bounds(min_tokens, max_tokens)
        support = max_tokens - min_tokens + 1
        if support > _MAX_ZIPF_SUPPORT:
            raise ConfigError(
                "max_tokens", max_tokens, f"zipf support must be <= {_MAX_ZIPF_SUPPORT}"
            )
        self.a, self.min_tokens, self.max_tokens = float(a), int(min_tokens), int(max_tokens)
        cdf = np.cumsum(np.arange(1, support + 1, dtype=np.float64) ** -self.a)
        self._cdf = cdf / cdf[-1]

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        k = np.searchsorted(self._cdf, rng.random(num), side="right")
        return self.min_tokens + np.minimum(k, self._cdf.size - 1).astype(np.int64)


@LENGTHS.register("empirical")
class EmpiricalLength:
    """Uniform draws (with replacement) from observed values (e.g. a trace column)."""

    def __init__(self, values: Sequence[int] | np.ndarray) -> None:
        arr = np.asarray(values, dtype=np.int64)
        if arr.ndim != 1 or arr.size == 0 or arr.min() < 1:
            raise ConfigError("values", f"{arr.size} values", "need >= 1 values, all >= 1")
        self.values = arr

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return self.values[rng.integers(0, self.values.size, size=num)]


@LENGTHS.register("quantile")
class QuantileLength:
    """Inverse-CDF from a quantile table: ``values[i]`` is the ``probs[i]`` quantile.

    Linear interpolation between entries; ``probs`` must run from 0 to 1 so the table spans the
    observed minimum and maximum. Used by the fitted presets.
    """

    def __init__(self, probs: Sequence[float], values: Sequence[float]) -> None:
        p = np.asarray(probs, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if p.size < 2 or p.size != v.size or p[0] != 0.0 or p[-1] != 1.0 or np.any(np.diff(p) <= 0):
            raise ConfigError("probs", f"{p.size} entries", "must rise strictly from 0 to 1")
        if np.any(np.diff(v) < 0) or v[0] < 1:
            raise ConfigError("values", f"{v.size} entries", "must be non-decreasing and >= 1")
        self.probs, self.values = p, v

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms in [0, 1) to token counts."""
        return np.rint(np.interp(u, self.probs, self.values)).astype(np.int64)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return self.from_uniform(rng.random(num))


class IndependentLengths:
    """Prompt and output drawn independently from their own distributions."""

    def __init__(self, prompt: LengthDistribution, output: LengthDistribution) -> None:
        self.prompt, self.output = prompt, output

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        return self.prompt.sample(rng, num), self.output.sample(rng, num)


class JointEmpiricalLengths:
    """(prompt, output) rows drawn together from a trace, keeping their correlation."""

    def __init__(self, prompt: np.ndarray, output: np.ndarray) -> None:
        p, o = np.asarray(prompt, dtype=np.int64), np.asarray(output, dtype=np.int64)
        if p.size == 0 or p.size != o.size:
            raise ConfigError("rows", p.size, "need >= 1 rows with both prompt and output")
        self.prompt, self.output = p, o

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, self.prompt.size, size=num)
        return self.prompt[rows], self.output[rows]


class JointLogNormalLengths:
    """Bivariate log-normal (correlation ``rho`` of the logs), each side truncated by resampling."""

    def __init__(
        self,
        prompt_median: float,
        prompt_sigma: float,
        output_median: float,
        output_sigma: float,
        rho: float,
        prompt_range: tuple[int, int] = (1, 1 << 20),
        output_range: tuple[int, int] = (1, 1 << 20),
    ) -> None:
        if not -1 < rho < 1:
            raise ConfigError("rho", rho, "must be in (-1, 1)")
        if prompt_median <= 0 or output_median <= 0 or prompt_sigma < 0 or output_sigma < 0:
            raise ConfigError("medians/sigmas", (prompt_median, output_median), "must be > 0")
        _check_bounds(*prompt_range)
        _check_bounds(*output_range)
        self.mean = np.log([prompt_median, output_median])
        s1, s2 = prompt_sigma, output_sigma
        self.cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
        self.low = np.array([prompt_range[0], output_range[0]])
        self.high = np.array([prompt_range[1], output_range[1]])

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((num, 2), dtype=np.int64)
        todo = np.arange(num)
        num_drawn = 0
        while todo.size:
            pairs = np.rint(np.exp(rng.multivariate_normal(self.mean, self.cov, todo.size)))
            num_drawn += todo.size
            ok = np.all((pairs >= self.low) & (pairs <= self.high), axis=1)
            out[todo[ok]] = pairs[ok]
            todo = todo[~ok]
            if todo.size and num_drawn > 1000 and (num - todo.size) < _MIN_ACCEPTANCE * num_drawn:
                raise ConfigError("joint lognormal", "bounds", "hold < 0.1% of the distribution")
        return out[:, 0], out[:, 1]


class GaussianCopulaLengths:
    """Quantile-table marginals joined by a Gaussian copula with correlation ``rho``.

    The marginals reproduce the data's quantiles (by construction at the table's entries) and
    ``rho`` is the correlation of the normal scores, so prompt/output dependence is kept too.
    """

    def __init__(self, prompt: QuantileLength, output: QuantileLength, rho: float) -> None:
        if not -1 < rho < 1:
            raise ConfigError("rho", rho, "must be in (-1, 1)")
        self.prompt, self.output, self.rho = prompt, output, float(rho)

    def sample(self, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((2, num))
        z2 = self.rho * z[0] + math.sqrt(1.0 - self.rho * self.rho) * z[1]
        return self.prompt.from_uniform(normal_cdf(z[0])), self.output.from_uniform(normal_cdf(z2))


_SQRT1_2 = math.sqrt(0.5)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF of each entry of a 1-d array (float64).

    The branches of Cephes' ``ndtr`` (what ``scipy.special.ndtr`` runs): ``0.5 + 0.5 erf(x)``
    near 0, ``0.5 erfc(|x|)`` (mirrored for x > 0) in the tails, with ``x = z / sqrt(2)``, so the
    tails keep their relative accuracy. Python's ``math.erf``/``erfc`` stand in for Cephes'
    (within 1e-14 relative); the sampled token counts are unchanged, which
    ``tests/workload/test_normal_cdf.py`` checks against scipy over many seeds. Importing
    scipy.special for this cost ~0.15 CPU-s of every ``servesim simulate`` start.
    """
    erf, erfc, half = math.erf, math.erfc, _SQRT1_2
    out = [
        0.5 + 0.5 * erf(x)
        if -half < x < half
        else (1.0 - 0.5 * erfc(x) if x > 0 else 0.5 * erfc(-x))
        for x in (np.asarray(z, dtype=np.float64) * half).tolist()
    ]
    return np.array(out, dtype=np.float64)
