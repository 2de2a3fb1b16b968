"""Cheapest deployment for a target rate by bisection over replica counts.

Plans that differ only in their number of replicas form a *family* (same GPU type, TP, PP,
EP, formats, scheduler, router). Behind a round-robin router each replica of a bigger family
member gets a smaller share of the same arrivals, so "holds the SLO at the target rate" is
monotone in the replica count: if n replicas miss the rate, fewer do too; if n hold it, more
cost more. For ``cost_at_rate`` the search therefore bisects each family for its fewest
replicas that hold, only among members no dearer than the best plan found so far, instead of
trying every count in price order. Disaggregated plans (two replica counts) form families of
one. The waves are built from every open family's midpoint, cheapest first (the first wave
holds one plan, as in the plain search), so results do not depend on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from servesim.planner.analytic import Estimate
from servesim.planner.evaluate import OK, PlanResult
from servesim.planner.space import PlanSpec


class _Search(Protocol):
    best: PlanResult | None
    results: dict[str, PlanResult]

    def run_wave(self, wave: Sequence[Estimate]) -> None: ...


def family_key(plan: PlanSpec) -> PlanSpec:
    """The plan with its replica count blanked (colocated), or the plan itself."""
    return replace(plan, replicas=0) if plan.mode == "colocated" else plan


def bisect_families(
    search: _Search,
    survivors: Sequence[Estimate],
    wave_size: int,
    prune: Callable[[Estimate, str], None],
) -> None:
    """Evaluate ``survivors`` (plans at the target rate) family by family; ``prune`` records
    each plan the bisection shows cannot be the cheapest, with the reason."""
    families: dict[PlanSpec, list[Estimate]] = {}
    for est in survivors:
        families.setdefault(family_key(est.plan), []).append(est)
    for members in families.values():
        members.sort(key=lambda e: e.plan.replicas)
    # Per family: members below ``lo`` miss the rate, members from ``hi`` on are known to
    # hold (the first of them) or to be dearer than the best plan.
    window = {key: [0, len(members)] for key, members in families.items()}
    limit = 1
    while True:
        picks = _midpoints(search.best, families, window)
        if not picks:
            break
        picks.sort(key=lambda p: (p[0].plan.price_per_hour_usd, p[0].plan.key()))
        wave, limit = picks[:limit], wave_size
        search.run_wave([est for est, _ in wave])
        for est, key in wave:
            result = search.results[est.plan.key()]
            index = families[key].index(est)
            if result.status == OK and result.capacity_per_s > 0:
                window[key][1] = index
            else:
                window[key][0] = index + 1
    _prune_the_rest(search, families, window, prune)


def _midpoints(
    best: PlanResult | None,
    families: dict[PlanSpec, list[Estimate]],
    window: dict[PlanSpec, list[int]],
) -> list[tuple[Estimate, PlanSpec]]:
    """The middle member of every family with members left to try (no dearer than best)."""
    picks = []
    for key, members in families.items():
        lo, hi = window[key]
        if best is not None:  # strictly dearer members cannot win (equal price may, on TTFT)
            while hi > lo and members[hi - 1].plan.price_per_hour_usd > best.price_per_hour_usd:
                hi -= 1
            window[key][1] = hi
        if lo < hi:
            picks.append((members[(lo + hi) // 2], key))
    return picks


def _prune_the_rest(
    search: _Search,
    families: dict[PlanSpec, list[Estimate]],
    window: dict[PlanSpec, list[int]],
    prune: Callable[[Estimate, str], None],
) -> None:
    best = search.best
    for key, members in families.items():
        lo = window[key][0]
        for index, est in enumerate(members):
            if est.plan.key() in search.results:
                continue
            if index < lo:
                why = (
                    f"dominated: fewer replicas than {members[lo - 1].plan.label()}, which "
                    "misses the target rate"
                )
            elif best is not None:
                why = f"dominated: dearer than {best.plan.label()}, which serves the rate"
            else:  # not reached: an open window always has a member to try
                why = "dominated: not needed by the bisection"
            prune(est, why)
