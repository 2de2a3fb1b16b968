"""Request attributes beyond lengths: SLO class and priority, tenant (user) and LoRA adapter.

Multi-tenant and fairness studies (VTC, per-class SLO attainment, S-LoRA adapter placement)
need a mix of these. Each attribute is drawn from a fixed categorical distribution: classes by
weight, users and adapters from a Zipf law over their ids (skew 0 = uniform; real multi-tenant
traces are skewed, a few tenants sending most requests).

The draw for a request is a pure function of (seed, key) where the key is its session (all
turns of a conversation share user, class and adapter), else its sampling group, else its id:
a counter-based mix (SplitMix64), so nothing is remembered per session and the stream stays
lazy.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.request import Request
from servesim.workload.workload import Workload

_MASK = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit hash of an integer (Steele et al. 2014)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@dataclass(frozen=True, slots=True)
class RequestClass:
    """An SLO class: requests get ``slo_class=name`` and ``priority`` with probability ∝ weight."""

    name: str
    weight: float
    priority: int = 0


@dataclass(frozen=True, slots=True)
class TagOptions:
    """The attribute mix.

    Attributes:
        classes: SLO classes with weights (empty: every request is ``"default"``, priority 0).
        num_users: tenants 0..num_users-1 (0: every request is user 0).
        user_skew: Zipf exponent over users (0: uniform).
        num_adapters: LoRA adapters ``adapter-0``.. (0: none).
        adapter_skew: Zipf exponent over adapters (0: uniform).
        adapter_fraction: fraction of requests that use an adapter (others: base model).
    """

    classes: tuple[RequestClass, ...] = ()
    num_users: int = 0
    user_skew: float = 0.0
    num_adapters: int = 0
    adapter_skew: float = 0.0
    adapter_fraction: float = 1.0

    @property
    def is_active(self) -> bool:
        """True when any attribute is configured."""
        return bool(self.classes) or self.num_users > 1 or self.num_adapters > 0


def _zipf_cdf(num: int, skew: float) -> list[float]:
    weights = np.arange(1, num + 1, dtype=np.float64) ** -skew
    cdf = np.cumsum(weights) / weights.sum()
    return cdf.tolist()


def _check(options: TagOptions) -> None:
    if any(c.weight <= 0 for c in options.classes):
        raise ConfigError("classes", [c.name for c in options.classes], "weights must be > 0")
    if len({c.name for c in options.classes}) != len(options.classes):
        raise ConfigError("classes", [c.name for c in options.classes], "names must be unique")
    for field in ("num_users", "num_adapters", "user_skew", "adapter_skew"):
        if getattr(options, field) < 0:
            raise ConfigError(field, getattr(options, field), "must be >= 0")
    if not 0 <= options.adapter_fraction <= 1:
        raise ConfigError("adapter_fraction", options.adapter_fraction, "must be in [0, 1]")


class TaggedWorkload(Workload):
    """Another workload with SLO class, priority, user and adapter set on every request."""

    def __init__(self, inner: Workload, options: TagOptions, streams: RandomStreams) -> None:
        _check(options)
        self.inner, self.options = inner, options
        self.name = inner.name
        self._seed = int(streams.generator("workload.tags").integers(0, 2**63))
        weights = np.array([c.weight for c in options.classes], dtype=np.float64)
        self._class_cdf = (np.cumsum(weights) / weights.sum()).tolist() if weights.size else []
        self._user_cdf = _zipf_cdf(options.num_users, options.user_skew)
        self._adapter_cdf = _zipf_cdf(options.num_adapters, options.adapter_skew)

    @property
    def num_skipped_rows(self) -> int:
        return self.inner.num_skipped_rows

    @property
    def num_capped_requests(self) -> int:
        return self.inner.num_capped_requests

    @property
    def skipped_by_problem(self) -> dict[str, int]:
        return self.inner.skipped_by_problem

    def _uniform(self, key: int, salt: int) -> float:
        return _mix64(self._seed ^ _mix64(key * 8 + salt)) / 2.0**64

    @staticmethod
    def _pick(cdf: Sequence[float], u: float) -> int:
        return min(bisect.bisect_right(cdf, u), len(cdf) - 1)

    def _key(self, request: Request) -> int:
        # Separate key spaces so session 5, group 5 and request 5 draw differently.
        if request.session_id is not None:
            return 3 * request.session_id
        if request.group_id is not None:
            return 3 * request.group_id + 1
        return 3 * request.request_id + 2

    def __iter__(self) -> Iterator[Request]:
        opts = self.options
        for request in self.inner:
            key = self._key(request)
            changes: dict[str, object] = {}
            if self._class_cdf:
                chosen = opts.classes[self._pick(self._class_cdf, self._uniform(key, 1))]
                changes["slo_class"] = chosen.name
                changes["priority"] = chosen.priority
            if opts.num_users > 1:
                changes["user_id"] = self._pick(self._user_cdf, self._uniform(key, 2))
            if opts.num_adapters > 0 and self._uniform(key, 3) < opts.adapter_fraction:
                index = self._pick(self._adapter_cdf, self._uniform(key, 4))
                changes["adapter_id"] = f"adapter-{index}"
            yield dataclasses.replace(request, **changes) if changes else request
