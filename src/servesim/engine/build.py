"""The replicas of one run, built from their setups: one ``Replica`` each, in index order,
with the data-parallel-attention groups tied and priced (``DPGroup``, ``DPGroupCost``).

``run_simulation`` (engine/simulation.py) drives them; this module only builds them, so the
driver never sees a ``DPGroupCost`` and the builders never see an arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from servesim.core.errors import ConfigError
from servesim.core.events import EventLoop
from servesim.engine.dp_group import DPGroup, DPGroupSpec
from servesim.engine.records import SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.sequence import Seq
from servesim.engine.setup import ReplicaSetup
from servesim.perf.dp_cost import ALL2ALL_BACKENDS, DPGroupCost
from servesim.perf.types import PerfModel

__all__ = ["build_replicas", "group_costs"]


def build_replicas(
    into: list[Replica],
    replicas: Sequence[ReplicaSetup],
    perf: PerfModel,
    loop: EventLoop,
    records: SimulationRecords,
    limit_of: Callable[[int], Callable[[], float]],
    on_done: Callable[[Seq], None],
    dp_groups: Sequence[DPGroupSpec],
    options: dict[str, bool],
) -> None:
    """Append one ``Replica`` per setup to ``into``, then tie the DP groups.

    ``into`` is filled in place: the driver already holds it for routing, so the replicas
    must land in that same list, in index order. ``limit_of(i)`` is replica ``i``'s clock
    limit, ``on_done`` gets each request that leaves an engine, ``options`` are the
    ``Replica`` flags (``skip_ahead``, ``check_invariants``).
    """
    rank_costs = group_costs(replicas, dp_groups, perf)
    for i, setup in enumerate(replicas):
        limit = limit_of(i)
        replica = Replica(
            i, setup, perf, records, loop, limit, dp_cost=rank_costs.get(i), **options
        )
        for engine in replica.engines:
            engine.on_done = on_done
        into.append(replica)
    for first, num_ranks, *_ in dp_groups:
        ranks = into[first : first + num_ranks]
        DPGroup([r.engines[0] for r in ranks], rank_costs[first], loop)


def group_costs(
    replicas: Sequence[ReplicaSetup], dp_groups: Sequence[DPGroupSpec], perf: PerfModel
) -> dict[int, DPGroupCost]:
    """The ``DPGroupCost`` of every replica in a data-parallel-attention group (one per
    distinct plan and size, shared by its groups: one set of memo tables)."""
    if not dp_groups:
        return {}
    calibration = getattr(perf, "calibration", None)
    if calibration is None:  # a plugged-in PerfModel prices whole iterations only
        raise ConfigError(
            "dp_attention", len(dp_groups), "needs the roofline perf model (MoE priced apart)"
        )
    fast = bool(getattr(perf, "fast_path", True))
    shared: list[DPGroupCost] = []
    out: dict[int, DPGroupCost] = {}
    for group in dp_groups:
        first, num_ranks, all2all, span, dense = DPGroupSpec(*group)  # tuples: defaults
        if first < 0 or first + num_ranks > len(replicas) or num_ranks < 2:
            raise ConfigError("dp_groups", (first, num_ranks), f"outside {len(replicas)} replicas")
        plan = replicas[first].plan
        if any(replicas[i].plan != plan for i in range(first, first + num_ranks)):
            raise ConfigError("dp_groups", (first, num_ranks), "ranks must share one plan")
        same = (plan, num_ranks, ALL2ALL_BACKENDS.get(all2all), span, dense)
        cost = next((c for c in shared if c.key == same), None)
        if cost is None:
            cost = DPGroupCost(
                plan,
                num_ranks,
                calibration,
                fast_path=fast,
                all2all=all2all,
                span=span,
                dense_mlp=dense,
            )
            shared.append(cost)
        for i in range(first, first + num_ranks):
            out[i] = cost
    return out
