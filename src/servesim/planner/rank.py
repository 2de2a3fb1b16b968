"""Ranking plans by an objective, Pareto fronts, and a one-line "why it wins".

Objectives (``OBJECTIVE_HELP`` has the one-line definitions the CLI shows):

- ``goodput_per_dollar`` (no target rate): most requests/s within SLO per dollar-hour of
  rent, each plan at its own capacity.
- With ``--target-rate R`` every plan is simulated at R and only plans holding the SLO there
  compete; the objectives are then evaluated at R:

  - ``cost_at_rate``: cheapest deployment ($/h); ties: lower p99 TTFT at R.
  - ``energy_per_token``: least GPU energy per output token at R (idle power included).
  - ``latency``: lowest p99 TTFT at R, then p99 TPOT at R.

Ranking ``latency`` or ``energy_per_token`` at each plan's own capacity would reward plans
with little capacity (a plan saturates at a lower, calmer rate), so those need a target.

The Pareto front is over (dollar-hours per unit of capacity, p99 TTFT, energy per token),
all minimised: no plan on it is beaten on every axis by another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from servesim.core.errors import ConfigError
from servesim.planner.evaluate import OK, PlanResult

OBJECTIVE_HELP = {
    "goodput_per_dollar": "max req/s within SLO per $/h at capacity (no target)",
    "cost_at_rate": "cheapest $/h that holds the SLO at --target-rate",
    "energy_per_token": "least J per output token at --target-rate, within SLO",
    "latency": "lowest p99 TTFT (then TPOT) at --target-rate, within SLO",
}
OBJECTIVES = tuple(OBJECTIVE_HELP)
# Objectives evaluated at the target rate (one probe per plan at that rate).
TARGET_OBJECTIVES = ("cost_at_rate", "energy_per_token", "latency")
PARETO_AXES = ("dollar_hours_per_rate", "ttft_p99_s", "energy_per_output_token_j")


def check_objective(objective: str, target_rate_per_s: float | None) -> None:
    """Raise ``ConfigError`` for an unknown objective, a target-rate objective without a rate,
    or a rate that is not a positive finite number."""
    if objective not in OBJECTIVES:
        raise ConfigError("objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    if target_rate_per_s is not None and not (
        math.isfinite(target_rate_per_s) and target_rate_per_s > 0
    ):
        raise ConfigError("target_rate_per_s", target_rate_per_s, "must be a finite rate > 0")
    if objective in TARGET_OBJECTIVES and target_rate_per_s is None:
        raise ConfigError(
            "target_rate_per_s", None, f"{objective} is evaluated at a target rate: give one"
        )


def _metric(result: PlanResult, name: str) -> float:
    value = result.metrics.get(name)
    return math.inf if value is None else float(value)


def axis_value(result: PlanResult, axis: str) -> float:
    """A Pareto axis of ``result`` (smaller is better)."""
    if axis == "dollar_hours_per_rate":
        per = result.capacity_per_dollar_hour
        return 1.0 / per if per > 0 else math.inf
    return _metric(result, axis)


def objective_key(
    result: PlanResult, objective: str, target_rate_per_s: float | None = None
) -> tuple[float, ...]:
    """Sort key of ``result`` under ``objective`` (smaller sorts first)."""
    if objective == "goodput_per_dollar":
        return (-result.capacity_per_dollar_hour, -result.capacity_per_s)
    meets = target_rate_per_s is None or result.capacity_per_s >= target_rate_per_s
    first = 0.0 if meets else 1.0  # plans missing the target rate sort last
    ttft, tpot = _metric(result, "ttft_p99_s"), _metric(result, "tpot_p99_s")
    if objective == "cost_at_rate":
        return (first, result.price_per_hour_usd, ttft, -result.capacity_per_s)
    if objective == "energy_per_token":
        energy = _metric(result, "energy_per_output_token_j")
        return (first, energy, result.price_per_hour_usd)
    return (first, ttft, tpot, result.price_per_hour_usd)


def rank(
    results: Sequence[PlanResult], objective: str, target_rate_per_s: float | None = None
) -> list[PlanResult]:
    """Plans with a positive capacity, best first (ties broken by plan key)."""
    usable = [r for r in results if r.status == OK and r.capacity_per_s > 0]
    return sorted(
        usable, key=lambda r: (objective_key(r, objective, target_rate_per_s), r.plan.key())
    )


def pareto_front(
    results: Sequence[PlanResult], axes: Sequence[str] = PARETO_AXES
) -> list[PlanResult]:
    """Non-dominated plans on ``axes`` (all minimised), sorted by the first axis."""
    usable = [r for r in results if r.status == OK and r.capacity_per_s > 0]
    points = [(tuple(axis_value(r, a) for a in axes), r) for r in usable]
    front = []
    for p, r in points:
        dominated = any(
            all(qi <= pi for qi, pi in zip(q, p, strict=True)) and q != p for q, _ in points
        )
        if not dominated:
            front.append((p, r))
    front.sort(key=lambda item: (item[0], item[1].plan.key()))
    return [r for _, r in front]


def _objective_value(result: PlanResult, objective: str) -> float:
    """The objective as one number, larger is better."""
    if objective == "goodput_per_dollar":
        return result.capacity_per_dollar_hour
    if objective == "cost_at_rate":
        return -result.price_per_hour_usd
    if objective == "energy_per_token":
        return -_metric(result, "energy_per_output_token_j")
    return -_metric(result, "ttft_p99_s")


def _edge(this: PlanResult, nxt: PlanResult, objective: str) -> str:
    a, b = _objective_value(this, objective), _objective_value(nxt, objective)
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return ""
    gain = (a - b) / abs(b)
    if abs(gain) < 0.005:
        return f"ties the next plan, {this.capacity_per_s / nxt.capacity_per_s:.2g}x its capacity"
    return f"{gain:+.0%} on the objective over the next plan"


def why_wins(ranked: Sequence[PlanResult], index: int, objective: str) -> str:
    """A short reason for ``ranked[index]``'s place: its edge over the next plan, what differs,
    the decode batch its memory allows, and the metric that limits it."""
    this = ranked[index]
    parts: list[str] = []
    if objective == "goodput_per_dollar":
        parts.append(f"{this.capacity_per_dollar_hour:.3g} req/s per $/h")
    elif objective == "cost_at_rate":
        parts.append(f"${this.price_per_hour_usd:.2f}/h for {this.capacity_per_s:.3g} req/s")
    elif objective == "energy_per_token":
        parts.append(f"{_metric(this, 'energy_per_output_token_j'):.3g} J/token")
    else:
        parts.append(f"p99 TTFT {_metric(this, 'ttft_p99_s'):.3g} s")
    if index + 1 < len(ranked):
        nxt = ranked[index + 1]
        edge = _edge(this, nxt, objective)
        if edge:
            parts.append(edge)
        diff = _differences(this, nxt)
        if diff:
            parts.append(f"differs by {diff}")
    batch = this.metrics.get("bound_max_batch")
    if batch:
        parts.append(f"decode batch <= {batch} (KV, max_num_seqs, TPOT)")
    if this.limiting:
        parts.append(f"limited by {this.limiting}")
    return "; ".join(parts)


def _differences(a: PlanResult, b: PlanResult) -> str:
    pa, pb = a.plan, b.plan
    pairs = (
        ("gpu", pa.gpu, pb.gpu),
        ("tp", pa.tp, pb.tp),
        ("pp", pa.pp, pb.pp),
        ("ep", pa.ep, pb.ep),
        ("replicas", pa.replicas, pb.replicas),
        ("dtype", pa.dtype, pb.dtype),
        ("kv", pa.kv_dtype, pb.kv_dtype),
        ("seqs", pa.scheduler.max_num_seqs, pb.scheduler.max_num_seqs),
        ("mbt", pa.scheduler.max_num_batched_tokens, pb.scheduler.max_num_batched_tokens),
        ("chunked", pa.scheduler.enable_chunked_prefill, pb.scheduler.enable_chunked_prefill),
        ("mode", pa.mode, pb.mode),
        ("prefill replicas", pa.prefill_replicas, pb.prefill_replicas),
        ("router", pa.router, pb.router),
    )
    if pa.mode == pb.mode == "disaggregated":  # then gpu/tp above are the decode pool's
        pairs += (
            ("prefill gpu", pa.prefill_pool_gpu, pb.prefill_pool_gpu),
            ("prefill tp", pa.prefill_pool_tp, pb.prefill_pool_tp),
        )
    return ", ".join(f"{name} {x} not {y}" for name, x, y in pairs if x != y)
