"""Plain rows for the planner's tables (the CLI renders them; no printing here).

Each function returns ``(headers, rows)`` of strings, so the CLI, a notebook or a report can
lay them out however it likes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from servesim.planner.evaluate import PlanResult
from servesim.planner.mix import MixReport
from servesim.planner.rank import why_wins

Rows = tuple[list[str], list[list[str]]]


def _num(value: object, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(value) * 1000:,.0f}"  # type: ignore[arg-type]


def plan_rows(
    results: Sequence[PlanResult], objective: str, with_why: bool, limit: int | None = None
) -> Rows:
    """Ranked (or Pareto) plans with their key figures (the first ``limit`` of them)."""
    headers = [
        "#",
        "plan",
        "GPUs",
        "$/h",
        "req/s",
        "req/s/GPU",
        "req/s per $/h",
        "p99 TTFT ms",
        "p99 TPOT ms",
        "J/token",
        "limit",
    ]
    if with_why:
        headers.append("why")
    rows = []
    for i, r in enumerate(results[:limit]):
        row = [
            str(i + 1),
            r.plan.label(),
            str(r.plan.num_gpus),
            f"{r.price_per_hour_usd:,.2f}",
            _num(r.capacity_per_s),
            _num(r.capacity_per_gpu),
            _num(r.capacity_per_dollar_hour),
            _ms(r.metrics.get("ttft_p99_s")),
            _ms(r.metrics.get("tpot_p99_s")),
            _num(r.metrics.get("energy_per_output_token_j")),
            r.limiting,
        ]
        if with_why:
            row.append(why_wins(results, i, objective))
        rows.append(row)
    return headers, rows


def status_rows(results: Sequence[PlanResult], limit: int) -> Rows:
    """Plans left out of the ranking, with their reasons: infeasible, pruned, failed, and
    (``--target-rate``) simulated plans that miss the SLO at the target."""
    left_out = [r for r in results if r.status != "ok" or (r.reason and r.capacity_per_s <= 0)]
    rows = [
        [r.plan.label(), r.status if r.status != "ok" else "misses", r.reason]
        for r in left_out[:limit]
    ]
    if len(left_out) > limit:
        rows.append([f"... {len(left_out) - limit} more (plan show STORE --top N)", "", ""])
    return ["plan", "status", "reason"], rows


def mix_rows(report: MixReport) -> tuple[Rows, Rows]:
    """(capacity matrix per option and slice, allocation per option)."""
    headers = ["option", "$/h", *(s.label() for s in report.slices)]
    matrix = [
        [o.name, f"{o.price_per_hour_usd:,.2f}", *(_num(c) for c in caps)]
        for o, caps in zip(report.options, report.capacity, strict=True)
    ]
    alloc = report.allocation
    counts = [
        [name, str(n), f"{n * o.price_per_hour_usd:,.2f}"]
        for o in report.options
        for name, n in alloc.counts.items()
        if name == o.name
    ]
    return (headers, matrix), (["option", "instances", "$/h"], counts)
