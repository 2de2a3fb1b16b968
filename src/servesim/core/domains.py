"""The domain of every number a user gives servesim, declared once.

A ``Domain`` says what values one quantity may take: integer or finite real, a lower and an
upper limit (with the reason for the upper one), or a fixed set of choices. The same object
checks a CLI flag (``Domain.check``), types a pydantic config field (``Domain.type()``) and
writes the flag's ``--help`` suffix (``Domain.help``), so a flag and the config field it sets
cannot disagree. Every refusal is one line: the field path, the value and the rule.

Coercions are strict: a boolean is not a number (YAML ``tp: true`` is refused, not read as
1), a fractional value is not an integer, ``inf`` and ``nan`` are not finite.

Upper limits are physical, not arbitrary: a value beyond them describes no deployment or run
servesim could simulate (a rate no cluster serves, a request count that would not finish in a
day, a prompt longer than any model's context window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from servesim.core.errors import ConfigError


def _num(value: float) -> str:
    """``1e+06`` style for big or tiny limits, plain digits otherwise."""
    if float(value).is_integer() and abs(value) < 1e7:
        return f"{int(value):,}"
    return f"{value:g}"


@dataclass(frozen=True, slots=True)
class Domain:
    """The values one numeric quantity may take.

    Attributes:
        unit: shown after the limits (``"req/s"``, ``"s"``, ``"tokens"``).
        integer: only whole numbers (a float like 2.0 counts as 2).
        low: the smallest value (None: unbounded below).
        low_open: ``low`` itself is excluded (``> low`` instead of ``>= low``).
        high: the largest value (None: unbounded, but still finite).
        why_high: why ``high`` is where it is (shown in the refusal).
        choices: the only values allowed (then the limits are not used).
    """

    unit: str = ""
    integer: bool = False
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    why_high: str = ""
    choices: tuple[int, ...] = ()

    def rule(self) -> str:
        """The rule in words: ``must be >= 1 and <= 64 (an integer; GPUs per stage)``."""
        if self.choices:
            return f"must be one of {', '.join(str(c) for c in self.choices)}"
        limits = []
        if self.low is not None:
            limits.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
        if self.high is not None:
            limits.append(f"<= {_num(self.high)}")
        text = "must be " + (" and ".join(limits) if limits else "a number")
        text += f" {self.unit}" if self.unit and limits else ""
        notes = ["an integer" if self.integer else "finite"]
        if self.why_high:
            notes.append(self.why_high)
        return f"{text} ({'; '.join(notes)})"

    def short(self) -> str:
        """The range for ``--help``: ``[1..64]``, ``(0..1e+06] req/s``, ``{8, 16, 32}``."""
        if self.choices:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        left = "(" if self.low_open or self.low is None else "["
        low = "-inf" if self.low is None else _num(self.low)
        high = "inf)" if self.high is None else f"{_num(self.high)}]"
        return f"{left}{low}..{high}" + (f" {self.unit}" if self.unit else "")

    def help(self, text: str) -> str:
        """``text`` with the range appended, for a flag's ``--help``."""
        return f"{text} {self.short()}".strip()

    def problem(self, value: object) -> str | None:
        """Why ``value`` is outside the domain, or None when it is inside."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a boolean" if isinstance(value, bool) else type(value).__name__
            return f"{self.rule()}, not {kind}"
        if isinstance(value, float) and not math.isfinite(value):
            return self.rule()
        if self.integer and not float(value).is_integer():
            return self.rule()
        if self.choices:
            return None if value in self.choices else self.rule()
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return self.rule()
        if self.high is not None and value > self.high:
            return self.rule()
        return None

    def check(self, field: str, value: object) -> None:
        """Raise ``ConfigError(field, value, rule)`` unless ``value`` is None or inside."""
        if value is None:
            return
        problem = self.problem(value)
        if problem is not None:
            raise ConfigError(field, value, problem)

    def type(self) -> Any:
        """An annotated type for a pydantic field holding this quantity."""
        base: type = int if self.integer else float
        return Annotated[base, BeforeValidator(self._before), AfterValidator(self._after)]

    def _before(self, value: Any) -> Any:
        # pydantic's lax mode reads True as 1; a boolean is never a count or a rate.
        if isinstance(value, bool):
            raise ValueError(f"{self.rule()}, not a boolean")
        return value

    def _after(self, value: Any) -> Any:
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def check_all(values: Mapping[str, object], domains: Mapping[str, Domain]) -> None:
    """Check each ``values[name]`` against ``domains[name]`` (names without a domain pass)."""
    for name, domain in domains.items():
        if name in values:
            domain.check(name, values[name])


def refuse_bool_coercion(raw: object, validated: object, path: str = "") -> None:
    """Raise ``ConfigError`` where a boolean in ``raw`` became a number in ``validated``.

    pydantic's lax mode reads ``tp: true`` as ``tp=1``; config models this package does not
    type with a ``Domain`` are covered by comparing the input with the validated dump.
    """
    if isinstance(raw, Mapping) and isinstance(validated, Mapping):
        for key, value in raw.items():
            if key in validated:
                refuse_bool_coercion(value, validated[key], f"{path}.{key}" if path else str(key))
    elif isinstance(raw, list | tuple) and isinstance(validated, list | tuple):
        for index, (value, out) in enumerate(zip(raw, validated, strict=False)):
            refuse_bool_coercion(value, out, f"{path}[{index}]")
    elif is_bool_read_as_number(raw, validated):
        raise ConfigError(path or "<root>", raw, "must be a number, not a boolean")


def is_bool_read_as_number(raw: object, validated: object) -> bool:
    """``raw`` is a boolean that validation turned into an int or a float."""
    return isinstance(raw, bool) and type(validated) in (int, float)


# The largest context window of any model servesim knows (Llama 4 Scout: 10M tokens).
MAX_CONTEXT_TOKENS = 10_000_000
_LONGER_THAN_ANY_CONTEXT = "longer than any model's context window"

# Arrival rates. No deployment servesim models (4,096 replicas at most) serves 10^6 req/s; a
# rate below 10^-6 req/s (one request per 11.6 days) only simulates idle time.
RATE_PER_S = Domain(
    unit="req/s", low=1e-6, high=1e6, why_high="no simulated deployment serves more"
)
# Speed-up of a trace's timestamps; the same bounds as a rate, relative.
RATE_SCALE = Domain(low=1e-6, high=1e6, why_high="a trace sped up further is one burst")
# The simulator finishes about 1,000 requests per wall second; 10^8 would take over a day.
NUM_REQUESTS = Domain(
    unit="requests", integer=True, low=1, high=100_000_000, why_high="would take days to simulate"
)
# Simulated seconds of arrivals (or of the clock): over three years is no serving run.
DURATION_S = Domain(unit="s", low=0, low_open=True, high=1e8, why_high="over 3 years")
# Latency targets: positive and finite (an infinite target is no target: leave it out).
SLO_S = Domain(unit="s", low=0, low_open=True, high=1e6, why_high="over 11 days")
FRACTION = Domain(low=0, low_open=True, high=1)
SEED = Domain(integer=True, low=0, high=2**63 - 1)
PARALLEL_DEGREE = Domain(integer=True, low=1, high=64, why_high="GPUs per replica stage")
EXPERT_PARALLEL = Domain(integer=True, low=1, high=1024)
REPLICAS = Domain(integer=True, low=1, high=4096)
# Sequences per batch: no GPU's KV cache holds a million sequences of even one block each.
MAX_NUM_SEQS = Domain(
    integer=True, low=1, high=1_000_000, why_high="more sequences than any KV cache holds"
)
BATCH_TOKENS = Domain(
    unit="tokens", integer=True, low=1, high=MAX_CONTEXT_TOKENS, why_high=_LONGER_THAN_ANY_CONTEXT
)
TOKENS = Domain(
    unit="tokens", integer=True, low=1, high=MAX_CONTEXT_TOKENS, why_high=_LONGER_THAN_ANY_CONTEXT
)
TOKENS_OR_ZERO = Domain(
    unit="tokens", integer=True, low=0, high=MAX_CONTEXT_TOKENS, why_high=_LONGER_THAN_ANY_CONTEXT
)
# A real-valued token figure (a distribution's median or mean).
TOKEN_FIGURE = Domain(
    unit="tokens", low=0, low_open=True, high=MAX_CONTEXT_TOKENS, why_high=_LONGER_THAN_ANY_CONTEXT
)
# vLLM's --block-size choices (its CUDA paged-attention kernels take these).
BLOCK_SIZE = Domain(unit="tokens", integer=True, choices=(1, 8, 16, 32, 64, 128, 256))
# Inter-arrival coefficient of variation (gamma); 1 is Poisson, 100 is already one burst.
CV = Domain(low=0, low_open=True, high=1000)
BURSTINESS = Domain(low=0, low_open=True, high=1000)
MEAN_TURNS = Domain(low=1, high=10_000, why_high="turns per conversation")
GROUP_SIZE = Domain(integer=True, low=1, high=1024, why_high="samples per prompt")
MAX_CONCURRENCY = Domain(integer=True, low=1, high=100_000_000)
NUM_WARMUPS = Domain(integer=True, low=0, high=1_000_000, why_high="warm-ups only delay the run")
NUM_EXPERTS = Domain(integer=True, low=1, high=100_000)

# Field types for the pydantic config models (``tp: ParallelDegree = Field(1, ...)``).
RatePerS = RATE_PER_S.type()
RateScale = RATE_SCALE.type()
NumRequests = NUM_REQUESTS.type()
DurationS = DURATION_S.type()
SloS = SLO_S.type()
Fraction = FRACTION.type()
Seed = SEED.type()
ParallelDegree = PARALLEL_DEGREE.type()
Replicas = REPLICAS.type()
Tokens = TOKENS.type()
TokensOrZero = TOKENS_OR_ZERO.type()
TokenFigure = TOKEN_FIGURE.type()
Cv = CV.type()
MeanTurns = MEAN_TURNS.type()
GroupSize = GROUP_SIZE.type()
MaxConcurrency = MAX_CONCURRENCY.type()
NumWarmups = NUM_WARMUPS.type()
NumExperts = NUM_EXPERTS.type()
