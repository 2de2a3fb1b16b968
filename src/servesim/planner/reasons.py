"""Short categories of why plans were pruned or infeasible (for "pruned N: why" lines)."""

from __future__ import annotations

from collections.abc import Sequence

from servesim.planner.evaluate import INFEASIBLE, PRUNED, PlanResult


def category(reason: str) -> str:
    """A short bucket for a prune/infeasible reason (for "pruned N: why")."""
    for needle, name in (
        ("needs weights", "weights do not fit"),
        ("ep=", "ep does not divide the experts or tp"),
        ("KV cache holds", "KV cache below p99 prompt"),
        ("no tensor peak", "dtype unsupported by GPU"),
        ("must divide", "tp/pp does not divide the model"),
        ("does not divide", "tp/pp does not divide the model"),
        ("neither divides", "tp/pp does not divide the model"),
        ("pipeline virtual engines", "KV blocks below one per pipeline stage"),
        ("exceeds the", "tp/pp does not divide the model"),
        ("TTFT >=", "p99 TTFT lower bound over target"),
        ("TPOT >=", "TPOT lower bound over target"),
        ("below the target rate", "throughput bound below target rate"),
        ("dominated: fails the SLO", "dominated (fails the rate it needs to beat the best)"),
        ("dominated: dearer", "dominated (dearer than a plan serving the rate)"),
        ("dominated", "dominated (bound below a simulated plan)"),
    ):
        if needle in reason:
            return name
    return reason.split(":")[0][:60]


def reason_counts(results: Sequence[PlanResult]) -> dict[str, int]:
    """Plans pruned or infeasible, counted per "status: category"."""
    counts: dict[str, int] = {}
    for r in results:
        if r.status in (PRUNED, INFEASIBLE):
            key = f"{r.status}: {category(r.reason)}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
