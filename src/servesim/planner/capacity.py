"""Capacity search: the highest arrival rate at which a deployment holds its SLO.

The search treats "holds the SLO at rate r" as monotone in r (more load never lowers queueing):
it brackets the threshold by growing (or shrinking) the rate geometrically from a starting
guess, then bisects until the bracket is within a relative tolerance. Each probe is one
simulation; the probe function is injected so the same search runs on the engine, on a test's
synthetic model, or on anything else (DistServe, OSDI'24, searches its "max rate within SLO
attainment" the same way).

``bracketed_capacity_search`` adds cheap bracketing: short runs (a fraction of the requests)
estimate the capacity first, and full-length probes start from that estimate, so a good
estimate leaves two full probes to confirm it; the result rests on full-length probes only
and stays within ``rel_tol`` of the plain search's (``tests/planner/test_bracketing.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

# Relative width of the final bracket: 5% is finer than the run-to-run noise of a p99 over a
# few hundred requests, so a tighter tolerance only buys more probes.
DEFAULT_REL_TOL = 0.05
# Geometric step while bracketing.
GROWTH = 2.0
DEFAULT_MAX_PROBES = 24
# No deployment serves this many requests per second; a search that still holds here stops
# (and reports this rate as a lower bound) instead of probing absurd rates.
MAX_SEARCH_RATE_PER_S = 1e5
# Width the short probes of ``bracketed_capacity_search`` narrow the capacity to: coarse on
# purpose, since a short run overstates capacity (``scenario.DEFAULT_REQUESTS_PER_REPLICA``)
# and the full-length probes correct the estimate anyway.
SHORT_REL_TOL = 0.15


@dataclass(frozen=True, slots=True)
class Probe:
    """One simulation of the search.

    Attributes:
        rate_per_s: offered arrival rate.
        holds: the SLO held.
        limiting: the metric closest to (or furthest past) its target.
        ratio: that metric's value / target (> 1 means violated).
        metrics: figures of the run worth keeping (flat mapping of numbers).
    """

    rate_per_s: float
    holds: bool
    limiting: str
    ratio: float
    metrics: dict[str, Any] = field(default_factory=dict)


ProbeFn = Callable[[float], Probe]


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """Outcome of a capacity search.

    Attributes:
        rate_per_s: the highest probed rate that held the SLO (0.0 when none did).
        upper_rate_per_s: the lowest probed rate that failed (inf when none did).
        limiting: the metric that failed just above the capacity (what limits it).
        best: the probe at ``rate_per_s`` (None when no rate held).
        probes: every probe, in the order run.
        below_need: the search stopped at its first probe, which failed at the rate the
            caller needed (``need_rate_per_s``): the capacity is below it.
        short_probes: the cheap bracketing probes (``bracketed_capacity_search``), in order;
            the capacity rests on ``probes`` (full length) only.
    """

    rate_per_s: float
    upper_rate_per_s: float
    limiting: str
    best: Probe | None
    probes: tuple[Probe, ...]
    below_need: bool = False
    short_probes: tuple[Probe, ...] = ()

    @property
    def num_probes(self) -> int:
        """Full-length simulations run."""
        return len(self.probes)


def capacity_search(
    probe: ProbeFn,
    *,
    start_rate_per_s: float,
    max_rate_per_s: float = math.inf,
    min_rate_per_s: float | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
    max_probes: int = DEFAULT_MAX_PROBES,
    need_rate_per_s: float | None = None,
) -> CapacityResult:
    """Find the highest rate at which ``probe(rate).holds``, to within ``rel_tol``.

    Args:
        probe: runs one simulation at a rate.
        start_rate_per_s: first rate tried (a good guess saves probes).
        max_rate_per_s: a known upper bound (e.g. the analytical throughput bound): the
            search never probes above it and reports it as the capacity if it holds there.
        min_rate_per_s: give up below this rate (default: start / 1000).
        rel_tol: stop when (fail - hold) / fail <= rel_tol.
        max_probes: hard cap on simulations.
        need_rate_per_s: the least capacity the caller has a use for (the rate a plan must
            reach to beat the best one so far, or a target rate): probed first, and when it
            fails the search stops there (``below_need``); when it holds, the search goes on
            upwards from it.
    """
    if not start_rate_per_s > 0:
        raise ValueError(f"start_rate_per_s must be > 0, got {start_rate_per_s}")
    floor = min_rate_per_s if min_rate_per_s is not None else start_rate_per_s / 1000.0
    max_rate_per_s = min(max_rate_per_s, MAX_SEARCH_RATE_PER_S)
    probes: list[Probe] = []
    rate = min(start_rate_per_s, max_rate_per_s)
    done, held = _need_probe(probe, need_rate_per_s, max_rate_per_s, probes, stop_at=max_probes)
    if done is not None:
        return done
    if held is not None:
        rate = min(max(start_rate_per_s, held.rate_per_s * GROWTH), max_rate_per_s)
    lo, hi = _bracket(probe, rate, held, probes, floor, max_rate_per_s, max_probes)
    return _bisect(probe, lo, hi, probes, rel_tol, max_probes)


def _bracket(
    probe: ProbeFn,
    rate: float,
    lo: Probe | None,
    probes: list[Probe],
    floor: float,
    max_rate_per_s: float,
    max_probes: int,
) -> tuple[Probe | None, Probe | None]:
    """Geometric bracketing from ``rate``: grow while holding, shrink while failing.

    Returns (the last probe that held, the last that failed), either None when not found
    before the cap, the floor or ``max_probes``; ``lo`` is a probe already known to hold.
    Appends every probe run to ``probes``."""
    hi: Probe | None = None
    while len(probes) < max_probes:
        p = probe(rate)
        probes.append(p)
        if p.holds:
            lo = p
            if hi is not None or rate >= max_rate_per_s:
                break
            rate = min(rate * GROWTH, max_rate_per_s)
        else:
            hi = p
            if lo is not None:
                break
            rate /= GROWTH
            if rate < floor:
                break
    return lo, hi


def _bisect(
    probe: ProbeFn,
    lo: Probe | None,
    hi: Probe | None,
    probes: list[Probe],
    rel_tol: float,
    max_probes: int,
) -> CapacityResult:
    """Bisect a bracket (geometric midpoint: rates span orders of magnitude) to ``rel_tol``."""
    while lo is not None and hi is not None and len(probes) < max_probes:
        if (hi.rate_per_s - lo.rate_per_s) / hi.rate_per_s <= rel_tol:
            break
        p = probe(math.sqrt(lo.rate_per_s * hi.rate_per_s))
        probes.append(p)
        if p.holds:
            lo = p
        else:
            hi = p
    return _result(lo, hi, probes)


def _result(lo: Probe | None, hi: Probe | None, probes: list[Probe]) -> CapacityResult:
    return CapacityResult(
        rate_per_s=lo.rate_per_s if lo is not None else 0.0,
        upper_rate_per_s=hi.rate_per_s if hi is not None else math.inf,
        limiting=hi.limiting if hi is not None else (lo.limiting if lo is not None else "none"),
        best=lo,
        probes=tuple(probes),
    )


def bracketed_capacity_search(
    probe: ProbeFn,
    short_probe: ProbeFn,
    *,
    start_rate_per_s: float,
    max_rate_per_s: float = math.inf,
    rel_tol: float = DEFAULT_REL_TOL,
    max_probes: int = DEFAULT_MAX_PROBES,
    need_rate_per_s: float | None = None,
    short_rel_tol: float = SHORT_REL_TOL,
) -> CapacityResult:
    """``capacity_search`` with cheap bracketing: short probes first, full-length ones last.

    ``short_probe`` (a run with few requests, a fraction of the cost) finds the capacity to
    within ``short_rel_tol``; full-length probes then start at that estimate with a step of
    ``rel_tol``, doubling the step's exponent while they keep moving the same way (galloping),
    and bisect the bracket they find to ``rel_tol``. The capacity rests on full-length probes
    only, so with a monotone hold/fail threshold it is within ``rel_tol`` of the plain
    search's (both bracket the same threshold); a good estimate costs two full probes instead
    of the plain search's geometric bracketing. The need probe (``need_rate_per_s``) is full
    length, so a plan pruned there is pruned exactly as by ``capacity_search``.
    """
    if not start_rate_per_s > 0:
        raise ValueError(f"start_rate_per_s must be > 0, got {start_rate_per_s}")
    max_rate_per_s = min(max_rate_per_s, MAX_SEARCH_RATE_PER_S)
    floor = start_rate_per_s / 1000.0
    probes: list[Probe] = []
    start = min(start_rate_per_s, max_rate_per_s)
    done, held = _need_probe(probe, need_rate_per_s, max_rate_per_s, probes)
    if done is not None:
        return done
    if held is not None:
        start = min(max(start_rate_per_s, held.rate_per_s * GROWTH), max_rate_per_s)
    rough = capacity_search(
        short_probe,
        start_rate_per_s=start,
        max_rate_per_s=max_rate_per_s,
        min_rate_per_s=held.rate_per_s if held is not None else floor,
        rel_tol=short_rel_tol,
        max_probes=max_probes,
    )
    found = _full_search(
        probe, rough, held, probes, start_rate_per_s, max_rate_per_s, rel_tol, max_probes
    )
    return replace(found, short_probes=rough.probes)


def _full_search(
    probe: ProbeFn,
    rough: CapacityResult,
    held: Probe | None,
    probes: list[Probe],
    start_rate_per_s: float,
    max_rate_per_s: float,
    rel_tol: float,
    max_probes: int,
) -> CapacityResult:
    """The full-length probes of ``bracketed_capacity_search``, after the short ones found
    ``rough``: galloping from its capacity (or from the held need probe ``held``), or the
    plain search from ``start_rate_per_s`` when neither a short probe nor ``held`` held."""
    if rough.best is None and held is None:
        # Short probes held nowhere: no estimate to start from; the plain search decides.
        return capacity_search(
            probe,
            start_rate_per_s=start_rate_per_s,
            max_rate_per_s=max_rate_per_s,
            rel_tol=rel_tol,
            max_probes=max_probes,
        )
    guess = rough.rate_per_s if rough.best is not None else 0.0
    floor = start_rate_per_s / 1000.0
    return _gallop(probe, guess, held, probes, floor, max_rate_per_s, rel_tol, max_probes)


def gallop_capacity_search(
    probe: ProbeFn,
    *,
    guess_rate_per_s: float,
    max_rate_per_s: float = math.inf,
    rel_tol: float = DEFAULT_REL_TOL,
    max_probes: int = DEFAULT_MAX_PROBES,
    need_rate_per_s: float | None = None,
) -> CapacityResult:
    """``capacity_search`` started at a guess of the capacity itself (the analytical bound).

    The first probe is at ``guess_rate_per_s`` (after the need probe, which prunes exactly as
    in ``capacity_search``); then steps of ``rel_tol`` whose exponent doubles while the probes
    keep moving one way (``_gallop``), and bisection to ``rel_tol``. With a monotone hold/fail
    threshold the capacity is within ``rel_tol`` of ``capacity_search``'s (both bracket the
    same threshold to that width); a guess within a few ``rel_tol`` of the capacity costs
    three or four probes instead of the geometric bracketing from half the bound plus bisection.
    """
    if not guess_rate_per_s > 0:
        raise ValueError(f"guess_rate_per_s must be > 0, got {guess_rate_per_s}")
    max_rate_per_s = min(max_rate_per_s, MAX_SEARCH_RATE_PER_S)
    probes: list[Probe] = []
    done, held = _need_probe(probe, need_rate_per_s, max_rate_per_s, probes, stop_at=max_probes)
    if done is not None:
        return done
    floor = guess_rate_per_s / 1000.0
    return _gallop(
        probe, guess_rate_per_s, held, probes, floor, max_rate_per_s, rel_tol, max_probes
    )


def _need_probe(
    probe: ProbeFn,
    need_rate_per_s: float | None,
    max_rate_per_s: float,
    probes: list[Probe],
    *,
    stop_at: int | None = None,
) -> tuple[CapacityResult | None, Probe | None]:
    """The need probe both searches start with (it prunes as in ``capacity_search``).

    Returns (the search's result when the need probe decides it, the held need probe): a
    failing probe prunes the plan; a held one at the rate cap, or with ``stop_at`` <= 1
    probes allowed (None: no such limit), ends the search there. Appends the probe run to
    ``probes``."""
    if need_rate_per_s is None or not need_rate_per_s > 0:
        return None, None
    first = probe(min(need_rate_per_s, max_rate_per_s))
    probes.append(first)
    if not first.holds:
        return CapacityResult(0.0, first.rate_per_s, first.limiting, None, (first,), True), None
    if first.rate_per_s >= max_rate_per_s or (stop_at is not None and stop_at <= 1):
        return _result(first, None, probes), first
    return None, first


def _gallop(
    probe: ProbeFn,
    guess: float,
    held: Probe | None,
    probes: list[Probe],
    floor: float,
    max_rate_per_s: float,
    rel_tol: float,
    max_probes: int,
) -> CapacityResult:
    """Full-length probes from ``guess``: steps of ``rel_tol`` whose exponent doubles while
    the probes keep moving one way, until one holds and one fails; then bisection. ``held``
    is a full probe known to hold: the search never goes below it."""
    base = 1.0 / (1.0 - 0.99 * rel_tol)  # one step brackets within rel_tol (float margin)
    lo: Probe | None = None
    hi: Probe | None = None
    rate = min(guess, max_rate_per_s)
    if held is not None and rate <= held.rate_per_s:
        lo, rate = held, min(held.rate_per_s * base, max_rate_per_s)
    exponent, direction = 1.0, 0
    while len(probes) < max_probes:
        p = probe(rate)
        probes.append(p)
        if p.holds:
            lo = p
            if hi is not None or rate >= max_rate_per_s:
                break
            exponent = exponent * 2 if direction > 0 else 1.0
            direction = 1
            rate = min(rate * base**exponent, max_rate_per_s)
            continue
        hi = p
        if lo is not None:
            break
        exponent = exponent * 2 if direction < 0 else 1.0
        direction = -1
        rate /= base**exponent
        if held is not None and rate <= held.rate_per_s:
            lo = held
            break
        if rate < floor:
            if p.rate_per_s <= floor:
                break
            rate = floor  # the doubled step overshot the floor: the floor itself is probed
    return _bisect(probe, lo, hi, probes, rel_tol, max_probes)
