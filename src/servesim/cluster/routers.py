"""Routers: pick a replica for each arriving request from what a real router can see.

One protocol (``route(request, views) -> position in views``), one registry, small classes.
A router sees the request (lengths, prefix block hashes) and each candidate replica's
``ReplicaView`` (queue length, running count, KV usage, outstanding tokens, pending prompt
tokens) at the arrival instant; never the future. A user router is a class in a plain file,
named ``path/to/file.py:ClassName``; it is built as ``cls(**options)`` and may define
``bind(context)`` to receive a ``RouterContext``.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from servesim.core.errors import ConfigError
from servesim.core.registry import Registry
from servesim.engine.simulation import ReplicaView
from servesim.perf.types import BatchShape, PerfModel, ReplicaPlan
from servesim.workload.request import Request


class Router(Protocol):
    """Chooses a replica; returns an index into ``views``.

    A router whose choices depend only on the requests it has seen, in order (never on the
    views), may declare the class attribute ``reads_state = False``: the cluster then routes
    arrivals a few ahead of the clock and lets each replica skip ahead to its own next one
    (``engine.skip_bounds.RoutedAhead``); results are those of routing on arrival. Undeclared means
    it reads state.
    """

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """The position in ``views`` of the replica to send ``request`` to."""
        ...


@dataclass(frozen=True, slots=True)
class RouterContext:
    """Static facts a router may use: the pool's plans, the perf model, its random stream.

    Attributes:
        plans: the plan of each candidate replica (the views' order when all are routable).
        perf: the cost model (SLO-aware routing predicts prefill time with it).
        rng: this router's own random generator.
        replica_ids: the ``replica_id`` of each plan's replica (empty: ``0..len(plans)-1``),
            so a router can find a view's plan when some candidates are not routable
            (autoscaling) and the views are a subset.
    """

    plans: tuple[ReplicaPlan, ...]
    perf: PerfModel
    rng: np.random.Generator
    replica_ids: tuple[int, ...] = ()


ROUTERS: Registry[type[Any]] = Registry("router")


def make_router(kind: str, options: dict[str, Any], context: RouterContext) -> Router:
    """Build the router ``kind`` names (or loads) with ``options``, bound to ``context``."""
    router: Router = ROUTERS.build(
        kind, options, field="router", method="route", signature="request, views", context=context
    )
    return router


def _argmin(views: Sequence[ReplicaView], key: Any) -> int:
    """Position of the smallest ``key(view)``; ties go to the lowest position."""
    best, best_key = 0, None
    for i in range(len(views)):
        k = key(views[i])
        if best_key is None or k < best_key:
            best, best_key = i, k
    return best


@ROUTERS.register("round_robin")
class RoundRobinRouter:
    """Cycles through the replicas (vLLM production stack's default)."""

    reads_state = False  # the next replica follows from the count of requests alone

    def __init__(self) -> None:
        self._next = 0

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Next replica in turn."""
        index = self._next % len(views)
        self._next += 1
        return index


@ROUTERS.register("random")
class RandomRouter:
    """Uniformly random replica (its own seeded stream)."""

    reads_state = False  # one draw per request, in arrival order

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def bind(self, context: RouterContext) -> None:
        """Take the router's random stream."""
        self._rng = context.rng

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """A random replica."""
        return int(self._rng.integers(len(views)))


@ROUTERS.register("least_outstanding_requests")
class LeastOutstandingRequestsRouter:
    """Fewest requests queued + running (join-the-shortest-queue)."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Replica with the fewest requests in it."""
        return _argmin(views, lambda v: v.num_queued + v.num_running)


@ROUTERS.register("dp_least_loaded")
class DPLeastLoadedRouter:
    """vLLM's data-parallel load balancing (``DPLBAsyncMPClient.get_core_engine_for_request``
    in ``vllm/v1/engine/core_client.py``): the rank with the lowest ``4 x waiting +
    running``, ties to the lowest index; for the ranks of a ``dp_attention`` pool."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Rank with the lowest vLLM load score."""
        return _argmin(views, lambda v: 4 * v.num_queued + v.num_running)


@ROUTERS.register("least_outstanding_tokens")
class LeastOutstandingTokensRouter:
    """Fewest prompt + output tokens of unfinished requests."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Replica with the least token work outstanding."""
        return _argmin(views, lambda v: v.outstanding_tokens)


@ROUTERS.register("least_kv_usage")
class LeastKVUsageRouter:
    """Lowest KV-cache utilisation, then fewest queued."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Replica with the most free KV memory."""
        return _argmin(views, lambda v: (v.kv_usage, v.num_queued))


@ROUTERS.register("power_of_two")
class PowerOfTwoRouter:
    """Power of two choices: sample two replicas, take the one with fewer requests
    (Mitzenmacher 2001), reading only two replicas' state per request."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def bind(self, context: RouterContext) -> None:
        """Take the router's random stream."""
        self._rng = context.rng

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """The less loaded of two random replicas."""
        n = len(views)
        if n == 1:
            return 0
        a, b = (int(x) for x in self._rng.choice(n, size=2, replace=False))
        va, vb = views[a], views[b]
        return a if va.num_queued + va.num_running <= vb.num_queued + vb.num_running else b


def _stable_hash(value: int) -> int:
    """A 32-bit hash that does not depend on the process (``hash()`` is salted for str)."""
    return zlib.crc32(value.to_bytes(8, "little", signed=True))


@ROUTERS.register("prefix_affinity")
class PrefixAffinityRouter:
    """Consistent hashing of the prompt's leading prefix blocks, with a load fallback.

    The key is the hash of the first ``num_key_blocks`` prefix blocks of the prompt (requests
    of a conversation or sharing a system prompt agree on it), placed on a ring with
    ``num_virtual_nodes`` points per replica. When the preferred replica holds more than
    ``max_load_ratio`` x the pool's mean load (+ ``slack``), the request goes to the
    less loaded of its two ring candidates, then to the least loaded replica (DualMap: two
    hash choices plus load-aware fallback).
    """

    def __init__(
        self,
        num_key_blocks: int = 4,
        num_virtual_nodes: int = 64,
        max_load_ratio: float = 1.5,
        slack: int = 4,
    ) -> None:
        if num_key_blocks < 1 or num_virtual_nodes < 1 or max_load_ratio < 1:
            raise ConfigError(
                "router.options",
                (num_key_blocks, num_virtual_nodes, max_load_ratio),
                "need num_key_blocks >= 1, num_virtual_nodes >= 1, max_load_ratio >= 1",
            )
        self.num_key_blocks = num_key_blocks
        self.num_virtual_nodes = num_virtual_nodes
        self.max_load_ratio = max_load_ratio
        self.slack = slack
        self._ring: list[tuple[int, int]] = []
        self._size = 0

    def _build(self, n: int) -> None:
        points = []
        for r in range(n):
            for v in range(self.num_virtual_nodes):
                points.append((_stable_hash(r * 1_000_003 + v), r))
        self._ring = sorted(points)
        self._size = n

    def _candidates(self, key: int, n: int) -> tuple[int, int]:
        if self._size != n:
            self._build(n)
        ring = self._ring
        i = bisect.bisect_left(ring, (key, -1)) % len(ring)
        first = ring[i][1]
        j = i
        while ring[j][1] == first and n > 1:
            j = (j + 1) % len(ring)
        return first, ring[j][1]

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """The prefix's home replica unless it is overloaded."""
        n = len(views)
        blocks = request.prefix_block_hashes[: self.num_key_blocks]
        if not blocks or n == 1:
            return _argmin(views, lambda v: v.num_queued + v.num_running)
        key = _stable_hash(int(zlib.crc32(np.asarray(blocks, dtype=np.int64).tobytes())))
        first, second = self._candidates(key, n)
        loads = [views[i].num_queued + views[i].num_running for i in range(n)]
        limit = self.max_load_ratio * sum(loads) / n + self.slack
        if loads[first] <= limit:
            return first
        if loads[second] <= limit:
            return second
        return min(range(n), key=lambda i: loads[i])


@ROUTERS.register("slo_aware")
class SLOAwareRouter:
    """Lowest predicted TTFT: (prompt tokens pending there + this prompt) prefilled at the
    replica's prefill rate from the perf model, plus one decode step if it is busy."""

    def __init__(self, probe_tokens: int = 2048) -> None:
        self.probe_tokens = probe_tokens
        self._rates: list[float] = []
        self._decode_s: list[float] = []
        self._position: dict[int, int] = {}  # replica_id -> index into the rates

    def bind(self, context: RouterContext) -> None:
        """Measure each replica's prefill rate and decode step once, with the perf model."""
        ids = context.replica_ids or tuple(range(len(context.plans)))
        self._position = {rid: k for k, rid in enumerate(ids)}
        for plan in context.plans:
            n = self.probe_tokens
            prefill = BatchShape.from_lists(prefill=[(n, 0)])
            t = context.perf.iteration_time(plan, prefill)
            decode = BatchShape.from_lists(decode_contexts=[n] * 32)
            self._rates.append(n / max(t.total_s, 1e-9))
            self._decode_s.append(context.perf.iteration_time(plan, decode).total_s)

    def predicted_ttft_s(self, request: Request, views: Sequence[ReplicaView]) -> list[float]:
        """Each replica's predicted time to first token for ``request``."""
        if not self._rates:
            raise ConfigError("router", "slo_aware", "needs bind(context) before routing")
        prompt = request.num_prompt_tokens
        out = []
        for i in range(len(views)):
            v = views[i]
            k = self._position.get(v.replica_id, i)  # the view's own replica's figures
            # queued requests also wait for KV memory / batch slots: each costs at least one
            # decode step of the running batch before it is admitted (vLLM admits per step)
            busy = self._decode_s[k] * (1 + v.num_queued) if v.num_running else 0.0
            out.append((v.num_queued_prompt_tokens + prompt) / self._rates[k] + busy)
        return out

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Replica with the smallest predicted time to first token (the first on ties)."""
        predicted = self.predicted_ttft_s(request, views)
        return min(range(len(predicted)), key=predicted.__getitem__)


@ROUTERS.register("adapter_affinity")
class AdapterAffinityRouter:
    """Sends a LoRA request to a replica holding its adapter in GPU slots (no copy over the
    host link, no slot taken from others), the least loaded of them, unless that one has
    more than ``max_extra_requests`` requests beyond the least loaded replica; requests
    without an adapter (or whose adapter no replica holds) go to the least loaded replica.
    The affinity-with-a-load-cap rule of adapter-aware routers (dLoRA, S-LoRA's cluster mode).

    Args:
        max_extra_requests: queued + running requests a holder may have beyond the least
            loaded replica before affinity gives way to load.
    """

    def __init__(self, max_extra_requests: int = 8) -> None:
        if max_extra_requests < 0:
            raise ConfigError("router.options.max_extra_requests", max_extra_requests, ">= 0")
        self.max_extra_requests = max_extra_requests

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """A holder of the request's adapter, else the least loaded replica."""
        seen = [views[i] for i in range(len(views))]
        loads = [v.num_queued + v.num_running for v in seen]
        best = min(range(len(seen)), key=lambda i: (loads[i], i))
        adapter = request.adapter_id
        if adapter is None:
            return best
        holders = [i for i, v in enumerate(seen) if adapter in v.adapters]
        if not holders:
            return best
        holder = min(holders, key=lambda i: (loads[i], i))
        return holder if loads[holder] - loads[best] <= self.max_extra_requests else best
