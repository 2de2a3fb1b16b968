"""MoE expert placement: which experts (and replicated copies) each expert-parallel device
holds (``ExpertPlacement``), judged by the EP step cost.

The perf model prices an EP step by its busiest device (``perf/moe.py``): the step waits for
the device that computes the largest share of routed tokens. A placement lists each device's
experts (``(num_experts + num_redundant) / ep`` slots per device; a replicated expert appears
several times, each copy taking an equal share of its tokens); servesim prices it
(``placement_popularity``: the routing re-expressed so the unchanged perf model sees the
placed loads) and checks it (every expert placed, slots per device, ids in range:
``expert-placement``). Built-ins (``expert_placement`` of a pool):

- ``eplb`` (default): DeepSeek's expert-parallel load balancer: replicate the experts with the
  most load per copy, pack slots heaviest-first onto the least loaded device. Applied when
  ``eplb_redundant_experts > 0`` (otherwise experts stay contiguous, as without EPLB).
- ``greedy``: EPLB's replication and packing, then a local search that moves load off the
  busiest device: swap one of its slots with a lighter slot of another device while that
  lowers the heavier of the two below the current maximum. Never worse than ``eplb`` on the
  busiest device; it also rebalances with no redundant slots at all.

A user placement is a class in a plain file (``expert_placement: path/to/file.py:Class``),
built with no arguments; it may define ``bind(context)`` to receive a ``PlacementContext``
(the replica plan and the perf model: ``context.step_cost_s(devices)`` is the objective).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from servesim.cluster.moe import eplb_devices, placement_popularity, routing_frequencies, slot_loads
from servesim.core.errors import ConfigError
from servesim.core.registry import Registry
from servesim.engine.contracts import ContractError
from servesim.perf.types import BatchShape, PerfModel, ReplicaPlan

# The reference step the objective prices: a decode batch of 256 sequences at 1k context
# (routed tokens = batch size, the regime where EP imbalance shows in every step).
_REFERENCE_BATCH = BatchShape.from_lists(decode_contexts=[1024] * 256)


class ExpertPlacement(Protocol):
    """Places a MoE layer's experts on ``ep`` devices."""

    def place(self, freq: np.ndarray, ep: int, num_redundant: int) -> list[list[int]]:
        """The expert ids on each device (``freq``: per-expert routing probabilities)."""
        ...


@dataclass(frozen=True, slots=True)
class PlacementContext:
    """What a placement may use: the replica's plan and the perf model.

    Attributes:
        plan: the replica (model, GPU, TP/EP) being placed, with its routing distribution.
        perf: the cost model (None where the plan is built without one: ``pool_plan``).
    """

    plan: ReplicaPlan
    perf: PerfModel | None

    def step_cost_s(self, devices: list[list[int]]) -> float:
        """The objective: seconds of the reference decode step under ``devices``."""
        if self.perf is None:
            raise ConfigError("expert_placement", "step_cost_s", "no perf model here")
        return ep_step_cost_s(self.plan, self.perf, devices)


PLACEMENTS: Registry[type[Any]] = Registry("expert placement")


@PLACEMENTS.register("eplb")
class EPLBPlacement:
    """DeepSeek EPLB: replicate by load per copy, pack heaviest-first (``moe.eplb_devices``)."""

    def place(self, freq: np.ndarray, ep: int, num_redundant: int) -> list[list[int]]:
        """EPLB's placement."""
        return eplb_devices(freq, ep, num_redundant)


@PLACEMENTS.register("greedy")
class GreedyPlacement:
    """EPLB, then swaps that lower the busiest device until none does.

    Args:
        max_rounds: swaps tried at most (each round moves load off the current busiest).
    """

    def __init__(self, max_rounds: int = 1000) -> None:
        self.max_rounds = max_rounds

    def place(self, freq: np.ndarray, ep: int, num_redundant: int) -> list[list[int]]:
        """EPLB's placement improved by busiest-device swaps."""
        devices = eplb_devices(freq, ep, num_redundant)
        loads = slot_loads(freq, devices)
        totals = [sum(slots) for slots in loads]
        for _ in range(self.max_rounds):
            if not self._swap_once(devices, loads, totals):
                break
        return devices

    @staticmethod
    def _swap_once(devices: list[list[int]], loads: list[list[float]], totals: list[float]) -> bool:
        """The best swap between the busiest device and another; False if none helps."""
        top = max(range(len(totals)), key=lambda d: (totals[d], -d))
        best: tuple[float, int, int, int] | None = None  # (new max of the pair, d, i, j)
        for d in range(len(totals)):
            if d == top:
                continue
            for i, a in enumerate(loads[top]):
                for j, b in enumerate(loads[d]):
                    if b >= a or devices[top][i] in devices[d] or devices[d][j] in devices[top]:
                        continue  # moves no load, or would put two copies on one device
                    pair_max = max(totals[top] - a + b, totals[d] - b + a)
                    if pair_max < totals[top] - 1e-12 and (best is None or pair_max < best[0]):
                        best = (pair_max, d, i, j)
        if best is None:
            return False
        _, d, i, j = best
        a, b = loads[top][i], loads[d][j]
        devices[top][i], devices[d][j] = devices[d][j], devices[top][i]
        loads[top][i], loads[d][j] = b, a
        totals[top] += b - a
        totals[d] += a - b
        return True


def make_placement(name: str, context: PlacementContext) -> ExpertPlacement:
    """The placement ``name`` (registry name or ``file.py:Class``), bound to ``context``."""
    cls = PLACEMENTS.get(name)
    try:
        policy = cls()
    except TypeError as exc:
        raise ConfigError("expert_placement", name, f"cannot be built: {exc}") from None
    bind = getattr(policy, "bind", None)
    if callable(bind):
        bind(context)
    if not callable(getattr(policy, "place", None)):
        raise ConfigError("expert_placement", name, "has no place(freq, ep, num_redundant)")
    return policy  # type: ignore[no-any-return]


def check_placement(
    name: str, devices: object, num_experts: int, ep: int, num_redundant: int
) -> list[list[int]]:
    """``devices`` as lists of ints if it is a valid placement, else an ``expert-placement``
    ``ContractError`` naming what is wrong."""
    per_device = (num_experts + num_redundant) // ep

    def fail(detail: str) -> ContractError:
        return ContractError(f"expert placement {name}", "expert-placement", detail, 0.0)

    if not isinstance(devices, (list, tuple)) or len(devices) != ep:
        raise fail(f"place returned {type(devices).__name__}, not {ep} device lists")
    out: list[list[int]] = []
    for d, experts in enumerate(devices):
        ids = [int(x) for x in experts]
        if len(ids) != per_device:
            raise fail(f"device {d} holds {len(ids)} experts, not {per_device}")
        if any(not 0 <= x < num_experts for x in ids):
            raise fail(f"device {d} holds an expert outside 0..{num_experts - 1}")
        out.append(ids)
    missing = set(range(num_experts)) - {x for ids in out for x in ids}
    if missing:
        raise fail(f"experts {sorted(missing)[:5]} are on no device")
    return out


def placed_plan(
    plan: ReplicaPlan, name: str, num_redundant: int, perf: PerfModel | None = None
) -> ReplicaPlan:
    """``plan`` with its routing re-expressed under placement ``name`` (what the deployment
    runs); ``eplb`` without redundant slots keeps contiguous experts, as before EPLB."""
    if name == "eplb" and not num_redundant:
        return plan
    freq = routing_frequencies(plan)
    if num_redundant < 0 or (len(freq) + num_redundant) % plan.ep:
        raise ConfigError(
            "num_redundant",
            num_redundant,
            f"experts + redundant must be a multiple of ep={plan.ep}",
        )
    policy = make_placement(name, PlacementContext(plan, perf))
    devices = check_placement(
        name, policy.place(freq, plan.ep, num_redundant), len(freq), plan.ep, num_redundant
    )
    return replace(plan, expert_popularity=placement_popularity(freq, devices))


def ep_step_cost_s(plan: ReplicaPlan, perf: PerfModel, devices: list[list[int]]) -> float:
    """Seconds the perf model gives the reference decode step with experts on ``devices``."""
    popularity = placement_popularity(routing_frequencies(plan), devices, keep_if_worse=False)
    placed = replace(plan, expert_popularity=popularity)
    return perf.iteration_time(placed, _REFERENCE_BATCH).total_s
