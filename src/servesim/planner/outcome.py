"""What a deployment search reports: ``SearchProgress`` (for a progress bar) while it runs
and ``SearchReport`` (every plan's result, the ranking, the Pareto front) at its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.planner.evaluate import PlanResult


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """Counts for a progress bar.

    Attributes:
        num_plans: plans in the space.
        num_done: plans with a result (any status).
        num_pruned: plans pruned (by a bound, or dominated after a probe).
        num_infeasible: plans that cannot run.
        num_failed: plans whose evaluation raised.
        best: the best plan so far (None before the first usable one).
        num_to_evaluate: plans the pre-filter left for simulation (the bar's total).
        num_evaluated: of those, plans with a result (simulated, resumed or dominated).
        num_simulated: plans simulated in this run.
    """

    num_plans: int
    num_done: int
    num_pruned: int
    num_infeasible: int
    num_failed: int
    best: PlanResult | None
    num_to_evaluate: int = 0
    num_evaluated: int = 0
    num_simulated: int = 0


@dataclass(slots=True)
class SearchReport:
    """What a search found.

    Attributes:
        results: every plan's result (ok, infeasible, pruned, failed), in enumeration order.
        ranked: usable plans, best first.
        pareto: the Pareto front (cost per capacity, p99 TTFT, energy per token).
        num_simulated: plans evaluated by simulation in this run (not taken from the store).
        num_resumed: plans whose results came from the store.
        prune_reasons: count of pruned/infeasible plans per reason category.
        search_hash: the store key of this search's inputs.
        simulated_keys: plan keys evaluated by simulation in this run, in completion order.
    """

    results: list[PlanResult]
    ranked: list[PlanResult]
    pareto: list[PlanResult]
    num_simulated: int = 0
    num_resumed: int = 0
    prune_reasons: dict[str, int] = field(default_factory=dict)
    search_hash: str = ""
    simulated_keys: tuple[str, ...] = ()

    def count(self, status: str) -> int:
        """Plans with ``status``."""
        return sum(1 for r in self.results if r.status == status)
