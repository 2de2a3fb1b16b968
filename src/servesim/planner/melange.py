"""Heterogeneous GPU mix (Mélange, Griggs et al. 2024): the cheapest set of instances of several
GPU types that serves every slice of the request-size distribution within SLO.

Different GPUs win on different request sizes (small requests are cheap on low-end GPUs,
long prompts need the bandwidth and memory of high-end ones), so a mix can beat every single
type. Formulation (an integer program solved by HiGHS through ``scipy.optimize.milp``):

- slices ``s`` with arrival rates ``lambda_s`` (the load split by request size);
- instance options ``o`` (one replica config each) with price ``p_o`` and, per slice, the
  capacity ``c_os`` (req/s within SLO when serving only that slice; 0 = cannot);
- variables: ``n_o`` integer instances, ``x_os`` in [0, 1] the share of slice ``s`` sent to
  ``o`` (a slice may be split across types, which the router can do by weight);
- minimise ``sum_o p_o n_o`` subject to ``sum_o x_os = 1`` for every slice and
  ``sum_s lambda_s x_os / c_os <= n_o`` (each instance's load fractions add up to at most 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from servesim.core.errors import InfeasibleError


@dataclass(frozen=True, slots=True)
class MixOption:
    """One instance type (a replica config).

    Attributes:
        name: label (e.g. ``h100-sxm tp4``).
        price_per_hour_usd: rent of one instance.
        max_instances: instances available (None: unlimited).
        gpu: GPU type the instance uses (options sharing a type share ``gpu_limits``).
        num_gpus: GPUs per instance.
    """

    name: str
    price_per_hour_usd: float
    max_instances: int | None = None
    gpu: str = ""
    num_gpus: int = 1


@dataclass(frozen=True, slots=True)
class MixAllocation:
    """The chosen mix.

    Attributes:
        counts: instances per option name (options with 0 left out).
        cost_per_hour_usd: total rent.
        shares: ``(slice index, option name, share of the slice)`` for shares > 0.
        best_single: ``(option name, instances, cost)`` of the cheapest single-type
            deployment, or None when no single type can serve every slice.
        saving_fraction: 1 - mix cost / best single cost (None without a single type).
    """

    counts: dict[str, int]
    cost_per_hour_usd: float
    shares: tuple[tuple[int, str, float], ...]
    best_single: tuple[str, int, float] | None
    saving_fraction: float | None


def single_type_cost(
    option: MixOption, slice_rates: Sequence[float], capacities: Sequence[float]
) -> tuple[int, float] | None:
    """(instances, cost) to serve all slices with ``option`` alone; None if it cannot."""
    load = 0.0
    for rate, cap in zip(slice_rates, capacities, strict=True):
        if rate <= 0:
            continue
        if cap <= 0:
            return None
        load += rate / cap
    count = max(1, math.ceil(load - 1e-9))
    if option.max_instances is not None and count > option.max_instances:
        return None
    return count, count * option.price_per_hour_usd


def solve_mix(
    options: Sequence[MixOption],
    slice_rates: Sequence[float],
    capacity: Sequence[Sequence[float]],
    gpu_limits: dict[str, int] | None = None,
) -> MixAllocation:
    """Cheapest instance counts serving ``slice_rates`` (module docstring).

    Args:
        options: instance types.
        slice_rates: arrival rate of each slice (req/s).
        capacity: ``capacity[o][s]``: req/s option ``o`` sustains on slice ``s`` alone.
        gpu_limits: GPUs available per GPU type, shared by the options of that type.

    Raises:
        InfeasibleError: no mix within the availability serves every slice.
    """
    num_o, num_s = len(options), len(slice_rates)
    cap = np.asarray(capacity, dtype=np.float64).reshape(num_o, num_s)
    rates = np.asarray(slice_rates, dtype=np.float64)
    # Variable vector: [n_0 .. n_{O-1}, x_00 .. x_{O-1,S-1}] (x row-major by option).
    num_vars = num_o + num_o * num_s
    cost = np.zeros(num_vars)
    cost[:num_o] = [o.price_per_hour_usd for o in options]
    lower = np.zeros(num_vars)
    upper = np.ones(num_vars)
    upper[:num_o] = [np.inf if o.max_instances is None else o.max_instances for o in options]
    for o in range(num_o):
        for s in range(num_s):
            if cap[o, s] <= 0:
                upper[num_o + o * num_s + s] = 0.0  # this type cannot serve the slice
    constraints = _constraints(options, rates, cap, gpu_limits)
    integrality = np.zeros(num_vars)
    integrality[:num_o] = 1
    found = milp(
        cost,
        constraints=constraints,
        integrality=integrality,
        bounds=Bounds(lower, upper),
    )
    if not found.success:
        raise InfeasibleError(f"no GPU mix serves every request-size slice: {found.message}")
    return _allocation(options, rates, cap, found.x)


def _constraints(
    options: Sequence[MixOption],
    rates: np.ndarray,
    cap: np.ndarray,
    gpu_limits: dict[str, int] | None,
) -> list[LinearConstraint]:
    """The program's rows over ``[n_o, x_os]``: every slice fully served (``sum_o x_os = 1``),
    each option's load within its instances (``sum_s lambda_s x_os / c_os - n_o <= 0``), and
    the GPUs of each limited type within ``gpu_limits``."""
    num_o, num_s = cap.shape
    num_vars = num_o + num_o * num_s
    cover = np.zeros((num_s, num_vars))
    for s in range(num_s):
        cover[s, num_o + s :: num_s] = 1.0
    load = np.zeros((num_o, num_vars))
    for o in range(num_o):
        load[o, o] = -1.0
        for s in range(num_s):
            if cap[o, s] > 0:
                load[o, num_o + o * num_s + s] = rates[s] / cap[o, s]
    constraints = [LinearConstraint(cover, 1.0, 1.0), LinearConstraint(load, -np.inf, 0.0)]
    for gpu, limit in sorted((gpu_limits or {}).items()):
        row = np.zeros(num_vars)
        row[:num_o] = [o.num_gpus if o.gpu == gpu else 0 for o in options]
        if row.any():
            constraints.append(LinearConstraint(row[np.newaxis, :], -np.inf, limit))
    return constraints


def _allocation(
    options: Sequence[MixOption], rates: np.ndarray, cap: np.ndarray, x: np.ndarray
) -> MixAllocation:
    num_o, num_s = cap.shape
    counts = {o.name: round(x[i]) for i, o in enumerate(options) if round(x[i]) > 0}
    mix_cost = sum(counts[o.name] * o.price_per_hour_usd for o in options if o.name in counts)
    shares = tuple(
        (s, options[o].name, float(x[num_o + o * num_s + s]))
        for s in range(num_s)
        for o in range(num_o)
        if x[num_o + o * num_s + s] > 1e-6
    )
    singles = []
    for i, option in enumerate(options):
        one = single_type_cost(option, rates.tolist(), cap[i].tolist())
        if one is not None:
            singles.append((one[1], option.name, one[0]))
    best = min(singles) if singles else None
    return MixAllocation(
        counts=counts,
        cost_per_hour_usd=float(mix_cost),
        shares=shares,
        best_single=(best[1], best[2], best[0]) if best is not None else None,
        saving_fraction=(1.0 - mix_cost / best[0]) if best is not None and best[0] > 0 else None,
    )
