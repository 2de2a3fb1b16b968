"""Objectives: what a run is worth, with unserved requests always counted against the policy.

``run_metrics(result)`` turns one simulation into figures; an ``Objective`` weighs them.

The penalty rule (so that dropping, rejecting or starving requests never pays): a request that
did not complete (rejected, or still queued/running when the scenario's clock stopped at
``max_time_s``) is scored as if it produced its first token and finished at that stop time,
``TTFT = E2E = max_time_s - arrival``, never better than the worst request that did complete;
its TPOT is the worst completed TPOT and at least 10x the TPOT target; it meets no SLO, adds
no tokens to throughput, and the run's cost and energy are divided by completed tokens only.
The time base of rates is ``max(last completion, last arrival) - first arrival``: arrivals are
fixed by the workload, so finishing fewer requests sooner cannot shrink it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.api import Result
from servesim.core.errors import ConfigError

#: metric -> (+1 higher is better / -1 lower is better, description)
METRICS: dict[str, tuple[int, str]] = {
    "goodput_per_s": (1, "requests per second meeting every SLO target"),
    "attainment": (1, "fraction of all requests meeting every SLO target"),
    "p99_ttft_s": (-1, "p99 time to first token, unfinished requests at the penalty"),
    "p99_tpot_s": (-1, "p99 time per output token, unfinished requests at the penalty"),
    "throughput_tokens_per_s": (1, "completed output tokens per second"),
    "cost_per_mtok_usd": (-1, "GPU rent per million completed output tokens"),
    "energy_per_token_j": (-1, "GPU energy per completed output token"),
    "jain_fairness": (1, "Jain index of SLO attainment across users (else SLO classes)"),
    "completed_fraction": (1, "fraction of requests that completed"),
}

ALIASES = {
    "goodput": "goodput_per_s",
    "p99_ttft": "p99_ttft_s",
    "ttft": "p99_ttft_s",
    "p99_tpot": "p99_tpot_s",
    "tpot": "p99_tpot_s",
    "throughput": "throughput_tokens_per_s",
    "cost": "cost_per_mtok_usd",
    "energy": "energy_per_token_j",
    "fairness": "jain_fairness",
    "jain": "jain_fairness",
}

# Ratios of figures that are zero (no goodput at all) are taken against this floor, so a
# policy that serves nothing is worse than one that serves a little, by a bounded amount.
_FLOOR = 1e-9


@dataclass(frozen=True, slots=True)
class Objective:
    """A weighted set of metrics; the utility of figures ``m`` is
    ``sum(weight * direction * ln(m))``, so a weight is the value of a 1% relative change.

    Attributes:
        weights: ``(metric, weight)`` pairs, metric names of ``METRICS``.
    """

    weights: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        """``goodput_per_s`` for one metric, else ``goodput_per_s:1,p99_ttft_s:0.5``."""
        if len(self.weights) == 1 and self.weights[0][1] == 1.0:
            return self.weights[0][0]
        return ",".join(f"{m}:{w:g}" for m, w in self.weights)

    @property
    def is_single(self) -> bool:
        """One metric with weight 1: its score is the metric in its own unit."""
        return len(self.weights) == 1 and self.weights[0][1] == 1.0

    def utility(self, metrics: Mapping[str, float]) -> float:
        """Higher is better: ``sum(w * direction * ln(max(m, floor)))``."""
        return sum(w * METRICS[m][0] * math.log(max(metrics[m], _FLOOR)) for m, w in self.weights)

    def delta(self, a: Mapping[str, float], b: Mapping[str, float]) -> float:
        """Utility of ``b`` minus that of ``a`` (> 0: ``b`` is better)."""
        return self.utility(b) - self.utility(a)


def parse_objective(objective: Objective | str | Mapping[str, float]) -> Objective:
    """``"goodput"``, ``"goodput:1,p99_ttft:0.5"`` or ``{"goodput": 1, ...}`` -> Objective."""
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        pairs: list[tuple[str, float]] = []
        for part in objective.split(","):
            name, _, weight = part.strip().partition(":")
            try:
                pairs.append((name, float(weight) if weight else 1.0))
            except ValueError:
                raise ConfigError("objective", objective, f"bad weight {weight!r}") from None
        items = pairs
    else:
        items = [(str(k), float(v)) for k, v in objective.items()]
    weights = []
    for name, weight in items:
        metric = ALIASES.get(name, name)
        if metric not in METRICS:
            valid = ", ".join([*ALIASES, *METRICS])
            raise ConfigError("objective", name, f"unknown metric; valid: {valid}")
        if not math.isfinite(weight) or weight <= 0:
            raise ConfigError("objective", weight, f"weight of {name} must be positive")
        weights.append((metric, weight))
    if not weights:
        raise ConfigError("objective", objective, "names no metric")
    return Objective(tuple(weights))


def run_metrics(result: Result) -> dict[str, float]:
    """Every ``METRICS`` figure of one simulation, under the penalty rule (module docstring)."""
    cols = result.requests_columns()
    cfg = result.config
    arrival = cols["arrival_s"]
    if arrival.size == 0:
        return {m: 0.0 if d > 0 else _FLOOR**-1 for m, (d, _) in METRICS.items()}
    done = cols["reject_reason"] == "none"
    horizon = float(cfg.max_time_s or np.nanmax(cols["completion_s"], initial=0.0))
    ttft, tpot = penalised_latencies(cols, done, horizon, cfg)
    met = slo_met(cols, done, cfg)
    first, last_arrival = float(arrival.min()), float(arrival.max())
    last_done = float(np.nanmax(cols["completion_s"][done], initial=last_arrival))
    duration = max(last_done, last_arrival) - first or 1.0
    tokens = int(cols["num_output_tokens"][done].sum())
    eff = result.summary.efficiency
    valid_tpot = tpot[~np.isnan(tpot)]
    return {
        "goodput_per_s": float(met.sum()) / duration,
        "attainment": float(met.mean()),
        "p99_ttft_s": float(np.percentile(ttft, 99)),
        "p99_tpot_s": float(np.percentile(valid_tpot, 99)) if valid_tpot.size else 0.0,
        "throughput_tokens_per_s": tokens / duration,
        "cost_per_mtok_usd": eff.cost_usd / max(tokens, 1) * 1e6,
        "energy_per_token_j": eff.energy_j / max(tokens, 1),
        "jain_fairness": jain_fairness(cols, met),
        "completed_fraction": float(done.mean()),
    }


def penalised_latencies(
    cols: Mapping[str, np.ndarray], done: np.ndarray, horizon_s: float, cfg: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Per-request TTFT and TPOT with unfinished requests at the penalty (TPOT NaN for
    completed single-token requests, which have none)."""
    ttft_done = cols["ttft_s"][done]
    worst_ttft = float(ttft_done.max()) if ttft_done.size else 0.0
    ttft = np.where(done, cols["ttft_s"], np.maximum(horizon_s - cols["arrival_s"], worst_ttft))
    tpot_done = cols["tpot_s"][done]
    tpot_done = tpot_done[~np.isnan(tpot_done)]
    target = cfg.slo.tpot_s if cfg.slo is not None and cfg.slo.tpot_s is not None else 0.0
    worst_tpot = max(float(tpot_done.max()) if tpot_done.size else 0.0, 10.0 * target)
    if worst_tpot == 0.0:
        worst_tpot = horizon_s
    tpot = np.where(done, cols["tpot_s"], worst_tpot)
    return ttft, tpot


def slo_met(cols: Mapping[str, np.ndarray], done: np.ndarray, cfg: Any) -> np.ndarray:
    """Completed requests within their class's TTFT and TPOT targets (all, without an SLO)."""
    if cfg.slo is None:
        return done.copy()
    spec = cfg.slo.to_spec()
    met = done.copy()
    classes = cols["slo_class"]
    for name in sorted(set(classes.tolist())):
        targets = spec.targets_for(name)
        rows = classes == name
        ok = np.ones(rows.shape, dtype=bool)
        if targets.ttft_s is not None:
            ok &= cols["ttft_s"] <= targets.ttft_s
        if targets.tpot_s is not None:
            tpot = cols["tpot_s"]
            ok &= np.isnan(tpot) | (tpot <= targets.tpot_s)
        met &= ~rows | ok
    return met


def jain_fairness(cols: Mapping[str, np.ndarray], met: np.ndarray) -> float:
    """Jain's index ``(sum x)^2 / (n sum x^2)`` of per-group attainment, groups being users
    when the workload has several, else SLO classes (1.0 with one group that is served;
    0.0 when nobody is served: no fairness credit for serving no one)."""
    users = cols["user_id"]
    keys = users if np.unique(users).size > 1 else cols["slo_class"]
    groups = sorted(set(keys.tolist()))
    shares = np.array([met[keys == g].mean() for g in groups], dtype=np.float64)
    squares = float((shares * shares).sum())
    if squares == 0.0:
        return 0.0
    return float(shares.sum() ** 2 / (len(shares) * squares))
