"""Diagnostics of one run, for a researcher improving a policy.

- ``breakdown``: per SLO class, priority and prompt-length tercile: requests, completed,
  attainment, p50/p99 TTFT (completed requests only; the penalty lives in the objectives).
- ``priority_inversions``: pairs (high, low) with ``low.priority < high.priority``, ``low``
  arriving after ``high`` yet scheduled first, while ``high`` was waiting.
- ``fcfs_overtakes``: the same count ignoring priority (how far from FCFS the order is).
- ``head_of_line``: short requests (prompt <= median) that waited more than twice the median
  queueing delay while a long prompt (>= the 90th percentile) was first scheduled during their
  wait: how often long prompts held short ones back, and the extra wait they saw.
- ``router_regret`` (when the policy routes): for each decision, the prompt tokens queued
  ahead of the request on the chosen replica minus the fewest on any candidate at that
  instant. It is myopic (it ignores decode load, prefix-cache hits and what came next; the
  counterfactual one, ``servesim.lab.counterfactual``, re-simulates), so a cache-affine
  router pays it knowingly; it shows how often and by how much a router ignored queued work.
- ``rejected``: counts by reason (``admission``: refused at the cluster entry);
  ``num_preemptions``; ``prefix_cache_hit_rate``. Requests refused at the entry never
  queued, so the overtake and head-of-line counts leave them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from servesim.api import Result
from servesim.lab import guard
from servesim.lab.objectives import slo_met

# Pairwise counts are O(n^2) in memory per block of rows; 512 rows x n columns of booleans.
_BLOCK_ROWS = 512


def diagnose(result: Result) -> dict[str, Any]:
    """The diagnostics of one run (plain, JSON-able)."""
    cols = result.requests_columns()
    done = cols["reject_reason"] == "none"
    met = slo_met(cols, done, result.config)
    reasons = cols["reject_reason"].copy()
    waited = np.ones(done.shape, dtype=bool)  # queued at some point (not refused at the entry)
    if result.cluster is not None and result.cluster.admission_rows:
        refused = np.asarray(result.cluster.admission_rows, dtype=np.int64)
        reasons[refused] = "admission"
        waited[refused] = False
    queued = {k: v[waited] for k, v in cols.items()}
    arrival = queued["arrival_s"]
    scheduled = queued["first_scheduled_s"]
    priority = queued["priority"].astype(np.int64)
    rejected: dict[str, int] = {}
    for reason in reasons[~done].tolist():
        rejected[reason] = rejected.get(reason, 0) + 1
    return {
        "breakdown": breakdown(cols, done, met),
        "priority_inversions": count_overtakes(arrival, scheduled, priority),
        "fcfs_overtakes": count_overtakes(arrival, scheduled),
        "head_of_line": head_of_line(queued),
        "rejected": dict(sorted(rejected.items())),
        "num_preemptions": int(cols["num_preemptions"].sum()),
        "prefix_cache_hit_rate": result.summary.prefix_cache_hit_rate,
        "router_regret": router_regret(guard.STATE.route_regrets),
    }


def router_regret(regrets: list[int]) -> dict[str, float] | None:
    """Summary of per-decision regrets (None when the policy made no routing decision)."""
    if not regrets:
        return None
    values = np.asarray(regrets, dtype=np.float64)
    return {
        "num_decisions": int(values.size),
        "regretful_fraction": float((values > 0).mean()),
        "mean_tokens": float(values.mean()),
        "max_tokens": float(values.max()),
    }


def _group_stats(ttft: np.ndarray, done: np.ndarray, met: np.ndarray) -> dict[str, Any]:
    served = ttft[done]
    return {
        "num_requests": int(done.size),
        "num_completed": int(done.sum()),
        "attainment": float(met.mean()) if met.size else 0.0,
        "ttft_p50_s": float(np.percentile(served, 50)) if served.size else None,
        "ttft_p99_s": float(np.percentile(served, 99)) if served.size else None,
    }


def breakdown(
    cols: Mapping[str, np.ndarray], done: np.ndarray, met: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Figures per ``slo_class=...``, ``priority=...`` and ``prompt=short|medium|long``."""
    out: dict[str, dict[str, Any]] = {}
    ttft = cols["ttft_s"]
    for column in ("slo_class", "priority"):
        values = cols[column]
        for value in sorted(set(values.tolist())):
            rows = values == value
            out[f"{column}={value}"] = _group_stats(ttft[rows], done[rows], met[rows])
    prompts = cols["num_prompt_tokens"]
    if prompts.size:
        low, high = np.percentile(prompts, [100 / 3, 200 / 3])
        buckets = {"short": prompts <= low, "long": prompts > high}
        buckets["medium"] = ~(buckets["short"] | buckets["long"])
        for name in ("short", "medium", "long"):
            rows = buckets[name]
            out[f"prompt={name}"] = _group_stats(ttft[rows], done[rows], met[rows])
    return out


def count_overtakes(
    arrival: np.ndarray, scheduled: np.ndarray, priority: np.ndarray | None = None
) -> int:
    """Pairs (i, j): j arrived after i and was first scheduled before i (or i never was), so
    while i was waiting; with ``priority``, only pairs where ``priority[j] < priority[i]``."""
    sched = np.where(np.isnan(scheduled), np.inf, scheduled)
    total = 0
    for start in range(0, arrival.size, _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        pairs = (arrival[None, :] > arrival[rows, None]) & (sched[None, :] < sched[rows, None])
        if priority is not None:
            pairs &= priority[None, :] < priority[rows, None]
        total += int(pairs.sum())
    return total


def head_of_line(cols: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Short requests held back behind long prompts (definition in the module docstring)."""
    prompts = cols["num_prompt_tokens"]
    arrival = cols["arrival_s"]
    sched = np.where(np.isnan(cols["first_scheduled_s"]), np.inf, cols["first_scheduled_s"])
    if prompts.size == 0:
        return {"num_blocked": 0, "blocked_fraction": 0.0, "mean_excess_wait_s": 0.0}
    wait = sched - arrival
    finite = wait[np.isfinite(wait)]
    typical = float(np.median(finite)) if finite.size else 0.0
    short = prompts <= np.median(prompts)
    long_starts = np.sort(sched[(prompts >= np.percentile(prompts, 90)) & np.isfinite(sched)])
    slow = short & (wait > 2.0 * typical)
    # a long prompt started in (arrival, first scheduled) of the short request
    lo = np.searchsorted(long_starts, arrival, side="right")
    hi = np.searchsorted(long_starts, sched, side="left")
    blocked = slow & (hi > lo)
    excess = wait[blocked] - typical
    excess = excess[np.isfinite(excess)]
    return {
        "num_blocked": int(blocked.sum()),
        "blocked_fraction": float(blocked.sum() / max(int(short.sum()), 1)),
        "mean_excess_wait_s": float(excess.mean()) if excess.size else 0.0,
    }
