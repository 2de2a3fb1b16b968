"""Autoscaling policies: what an autoscaled pool should do at each round (``ScalingPolicy``).

The policy only decides; the autoscaler (``cluster/autoscale.py``) acts: ``+1`` starts one
stopped replica (paid from then, routable after its cold start), ``-1`` drains the up replica
with the fewest outstanding tokens (no new requests; it stops once empty), ``0`` holds. A
decision the pool cannot carry out (start with none stopped, drain at ``min_replicas``) is
a no-op. Built-ins:

- ``threshold`` (default): one replica up when the pool's signal (mean queued requests or
  mean KV usage over its up replicas) exceeds ``scale_up_threshold`` and no start is under
  way; one down below ``scale_down_threshold``.
- ``target``: Kubernetes' horizontal pod autoscaler rule: the replica count that would
  bring the signal to ``target`` is ``ceil(n * signal / target)`` over the ``n`` replicas up
  or starting; move one replica toward it per round unless the ratio is within
  ``tolerance`` of 1 (HPA's 10% dead band), so it does not flap around the target.

A user policy is a class in a plain file (``autoscale: {policy: path/to/file.py:Class,
options: {...}}``), built as ``cls(**options)``; it may define ``bind(config)`` to read the
pool's ``AutoscaleConfig`` (metric, thresholds, interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from servesim.cluster.config import AutoscaleConfig
from servesim.core.errors import ConfigError
from servesim.core.registry import Registry
from servesim.engine.contracts import ContractError
from servesim.engine.simulation import ReplicaView

#: the decisions a policy may return
SCALE_UP, HOLD, SCALE_DOWN = 1, 0, -1


@dataclass(frozen=True, slots=True)
class PoolState:
    """What a scaling policy sees of one autoscaled pool at a round.

    Attributes:
        now_s: simulated time of the round.
        views: the up replicas that take requests (cold start over, not draining).
        num_starting: replicas started whose cold start is not over.
        num_stopped: replicas that could be started.
        num_draining: replicas finishing their requests before they stop.
        min_replicas: the pool's floor (``AutoscaleConfig.min_replicas``).
        max_replicas: its ceiling (the pool's ``replicas``).
    """

    now_s: float
    views: tuple[ReplicaView, ...]
    num_starting: int
    num_stopped: int
    num_draining: int
    min_replicas: int
    max_replicas: int


class ScalingPolicy(Protocol):
    """Decides each round whether an autoscaled pool grows, shrinks or holds."""

    def decide(self, pool: PoolState) -> int:
        """``+1`` (start a replica), ``-1`` (drain one) or ``0`` (hold)."""
        ...


SCALING_POLICIES: Registry[type[Any]] = Registry("autoscale policy")


def pool_signal(metric: str, views: Sequence[ReplicaView]) -> float:
    """The pool's mean ``metric`` (``queue_length`` or ``kv_usage``) over ``views``
    (infinite with no replica up: nothing serves, so scaling up is always right)."""
    if not views:
        return math.inf
    if metric == "kv_usage":
        return sum(v.kv_usage for v in views) / len(views)
    return sum(v.num_queued for v in views) / len(views)


@SCALING_POLICIES.register("threshold")
class ThresholdPolicy:
    """Up above ``scale_up_threshold`` (one start at a time), down below
    ``scale_down_threshold`` (the pool's ``AutoscaleConfig``, read by ``bind``)."""

    def __init__(self) -> None:
        self.config = AutoscaleConfig()

    def bind(self, config: AutoscaleConfig) -> None:
        """Take the pool's metric and thresholds."""
        self.config = config

    def decide(self, pool: PoolState) -> int:
        """The threshold rule."""
        config = self.config
        signal = pool_signal(config.metric, pool.views)
        if signal > config.scale_up_threshold and pool.num_stopped and not pool.num_starting:
            return SCALE_UP
        if signal < config.scale_down_threshold and len(pool.views) > pool.min_replicas:
            return SCALE_DOWN
        return HOLD


@SCALING_POLICIES.register("target")
class TargetPolicy:
    """Move toward ``ceil(n * signal / target)`` replicas, one per round (Kubernetes HPA).

    Args:
        target: the signal per replica to hold (queued requests, or KV usage in (0, 1]);
            None: midway between the pool's two thresholds.
        tolerance: no change while ``signal / target`` is within this of 1.
    """

    def __init__(self, target: float | None = None, tolerance: float = 0.1) -> None:
        if target is not None and not target > 0:
            raise ConfigError("autoscale.options.target", target, "must be > 0")
        if not 0 <= tolerance < 1:
            raise ConfigError("autoscale.options.tolerance", tolerance, "must be in [0, 1)")
        self.target = target
        self.tolerance = tolerance
        self.metric = "queue_length"

    def bind(self, config: AutoscaleConfig) -> None:
        """Take the pool's metric (and the target, when not given)."""
        self.metric = config.metric
        if self.target is None:
            self.target = (config.scale_up_threshold + config.scale_down_threshold) / 2

    def decide(self, pool: PoolState) -> int:
        """One step toward the replica count that puts the signal at the target."""
        target = self.target or 1.0
        signal = pool_signal(self.metric, pool.views)
        current = len(pool.views) + pool.num_starting
        if math.isinf(signal):
            return SCALE_UP
        if abs(signal / target - 1.0) <= self.tolerance:
            return HOLD
        desired = max(math.ceil(current * signal / target), pool.min_replicas)
        if desired > current:
            return SCALE_UP
        if desired < current and not pool.num_starting:
            return SCALE_DOWN
        return HOLD


def make_scaling_policy(config: AutoscaleConfig) -> ScalingPolicy:
    """The pool's policy: ``config.policy`` built with ``config.options``, bound to ``config``."""
    policy: ScalingPolicy = SCALING_POLICIES.build(
        config.policy,
        config.options,
        field="autoscale",
        method="decide",
        signature="pool",
        context=config,
    )
    return policy


def check_decision(name: str, decision: object, now_s: float) -> int:
    """``decision`` if it is -1, 0 or +1, else a ``scale-decision`` ``ContractError``."""
    if type(decision) is int and decision in (SCALE_UP, HOLD, SCALE_DOWN):
        return decision
    raise ContractError(
        f"autoscale policy {name}",
        "scale-decision",
        f"decide returned {decision!r}, not -1, 0 or +1",
        now_s,
    )
