"""Evaluate one plan: a capacity search on the engine, reduced to the figures a plan is ranked by.

``evaluate_plan`` is the unit of work the executors ship to workers: a top-level function of
picklable arguments, deterministic for given inputs (the scenario's seed drives every probe),
so the in-process, process-pool and Ray executors give identical results.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ServesimError
from servesim.metrics import Summary
from servesim.perf import default_perf_model
from servesim.perf.types import PerfModel
from servesim.planner.capacity import (
    DEFAULT_MAX_PROBES,
    CapacityResult,
    Probe,
    ProbeFn,
    bracketed_capacity_search,
    capacity_search,
    gallop_capacity_search,
)
from servesim.planner.probe import ViolationWatch
from servesim.planner.scenario import Scenario, simulate_plan
from servesim.planner.space import PlanSpec
from servesim.specs.catalog import get_gpu

logger = logging.getLogger(__name__)

# Statuses of a plan in a search.
OK = "ok"
INFEASIBLE = "infeasible"
PRUNED = "pruned"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PlanTask:
    """One plan to evaluate.

    Attributes:
        scenario: the fixed part of the search.
        plan: the plan.
        start_rate_per_s: first probe rate (half the analytical bound is a good start).
        max_rate_per_s: never probe above this (a margin over the analytical bound).
        rel_tol: capacity search tolerance.
        perf: a custom perf model (None: the process's default roofline model).
        bounds: the analytical estimate's figures, kept with the result.
        need_rate_per_s: the rate the plan must hold to be of use (to beat the best plan so
            far, or the target rate); probed first, and a failure there ends the evaluation.
        need_reason: what ``need_rate_per_s`` stands for (the pruned plan's reason).
        at_target: evaluate at ``need_rate_per_s`` only (``--target-rate`` objectives): one
            probe, its figures are the plan's, and its capacity is "at least the target".
        early_stop: end a probe as soon as its p99 targets are certainly lost
            (``servesim.planner.probe``; the pass/fail outcome is unchanged).
        bracketing: short probes bracket the capacity before full-length ones
            (``capacity.bracketed_capacity_search``; the capacity moves within ``rel_tol``).
        from_bound: start the capacity search at the analytical bound (taken as twice
            ``start_rate_per_s``, which the search sets to half the bound) and gallop from it
            (``capacity.gallop_capacity_search``; the capacity moves within ``rel_tol``).
    """

    scenario: Scenario
    plan: PlanSpec
    start_rate_per_s: float
    max_rate_per_s: float = math.inf
    rel_tol: float = 0.05
    perf: PerfModel | None = None
    bounds: dict[str, Any] = field(default_factory=dict)
    need_rate_per_s: float | None = None
    need_reason: str = ""
    at_target: bool = False
    early_stop: bool = True
    bracketing: bool = False
    from_bound: bool = False


@dataclass(frozen=True, slots=True)
class PlanResult:
    """What the search knows about one plan.

    Attributes:
        plan: the plan.
        status: ``ok``, ``infeasible``, ``pruned`` or ``failed``.
        reason: why it is not ``ok`` (the error for ``failed``).
        capacity_per_s: highest rate within SLO (0 when none held).
        limiting: the metric that fails just above the capacity.
        num_probes: simulations run.
        metrics: figures of the run at capacity (see ``probe_metrics``) and the analytical
            bounds (``bound_*``).
        wall_s: wall time of the evaluation (not part of the result's identity).
    """

    plan: PlanSpec
    status: str
    reason: str = ""
    capacity_per_s: float = 0.0
    limiting: str = ""
    num_probes: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def price_per_hour_usd(self) -> float:
        """Rent of the deployment per hour."""
        return self.plan.price_per_hour_usd

    @property
    def capacity_per_gpu(self) -> float:
        """Capacity per GPU (requests/s)."""
        return self.capacity_per_s / self.plan.num_gpus

    @property
    def capacity_per_dollar_hour(self) -> float:
        """Capacity per dollar-hour of rent (requests/s per $/h): goodput per dollar."""
        price = self.price_per_hour_usd
        return self.capacity_per_s / price if price > 0 else math.inf

    def same_outcome(self, other: PlanResult) -> bool:
        """Equal apart from wall time (what "identical results" means across executors)."""
        return (self.plan, self.status, self.reason, self.capacity_per_s, self.limiting) == (
            other.plan,
            other.status,
            other.reason,
            other.capacity_per_s,
            other.limiting,
        ) and self.metrics == other.metrics


def probe_metrics(summary: Summary) -> dict[str, Any]:
    """The figures kept from a probe (flat, JSON-able)."""
    eff = summary.efficiency
    slo = summary.slo.overall if summary.slo is not None else None
    return {
        "ttft_p99_s": summary.ttft.p99_s,
        "ttft_p50_s": summary.ttft.p50_s,
        "tpot_p99_s": summary.tpot.p99_s,
        "tpot_p50_s": summary.tpot.p50_s,
        "e2e_p99_s": summary.e2e.p99_s,
        "attainment": slo.attainment if slo is not None else None,
        "goodput_per_s": slo.goodput_per_s if slo is not None else None,
        "output_tokens_per_s": summary.output_throughput_tokens_per_s,
        "energy_per_output_token_j": eff.energy_per_output_token_j,
        "mean_power_w": eff.mean_power_w,
        "cost_per_million_output_tokens_usd": eff.cost_per_million_output_tokens_usd,
        "mean_batch_size": summary.batch_size.mean,
        "num_preemptions": summary.num_preemptions,
    }


def make_probe(task: PlanTask, perf: PerfModel, num_requests: int | None = None) -> ProbeFn:
    """The probe function of ``task``'s capacity search; ``num_requests`` shortens each run
    (cheap bracketing probes; None: the scenario's full probe length)."""
    scenario = task.scenario
    shape_max_out = scenario.shape().max_output_tokens
    num = num_requests if num_requests is not None else scenario.num_requests(task.plan)

    def probe(rate_per_s: float) -> Probe:
        watch = ViolationWatch(scenario.criterion, num)
        use_watch = task.early_stop and watch.is_active
        summary = simulate_plan(
            scenario,
            task.plan,
            rate_per_s,
            perf,
            max_output_tokens=shape_max_out,
            num_requests=num,
            stop_when=watch if use_watch else None,
        )
        holds, limiting, ratio = scenario.criterion.check(summary)
        metrics = probe_metrics(summary)
        if watch.stopped:  # the run was cut short: its SLO was already lost
            value = metrics.get(f"{watch.stopped}_s")
            target = getattr(scenario.criterion, f"{watch.stopped}_s")
            holds, limiting = False, watch.stopped
            ratio = value / target if value is not None and target else math.inf
            metrics["stopped_early"] = True
        return Probe(rate_per_s, holds, limiting, ratio, metrics)

    return probe


def evaluate_plan(task: PlanTask) -> PlanResult:
    """Capacity search of one plan; errors become a ``failed`` result, never a crash."""
    started = time.perf_counter()
    perf = task.perf if task.perf is not None else default_perf_model()
    try:
        found = _search(task, perf)
    except ServesimError as exc:
        return PlanResult(task.plan, INFEASIBLE, str(exc), wall_s=time.perf_counter() - started)
    except Exception as exc:  # a bug or a user plug-in's error: record it, keep searching
        logger.exception("plan %s failed", task.plan.key())
        reason = f"{type(exc).__name__}: {exc}"
        return PlanResult(task.plan, FAILED, reason, wall_s=time.perf_counter() - started)
    return _result(task, found, time.perf_counter() - started)


def _search(task: PlanTask, perf: PerfModel) -> CapacityResult:
    """The capacity search of ``task``: with cheap bracketing when asked and worth it."""
    scenario = task.scenario
    short = scenario.short_num_requests(task.plan)
    kwargs: dict[str, Any] = {
        "start_rate_per_s": task.start_rate_per_s,
        "max_rate_per_s": task.max_rate_per_s,
        "rel_tol": task.rel_tol,
        "max_probes": 1 if task.at_target else DEFAULT_MAX_PROBES,
        "need_rate_per_s": task.need_rate_per_s,
    }
    # After a full need probe has held, the plain search already starts from a full anchor;
    # short probes then cost more than they save (README example: +10% CPU), so they are
    # used for plans searched from scratch (the first plan, --exhaustive, capacity).
    fresh = task.need_rate_per_s is None and not task.at_target
    if task.bracketing and fresh and short is not None:
        return bracketed_capacity_search(
            make_probe(task, perf), make_probe(task, perf, short), **kwargs
        )
    if task.from_bound and not task.at_target:
        del kwargs["start_rate_per_s"]
        guess = 2.0 * task.start_rate_per_s  # the search starts at half the bound
        return gallop_capacity_search(make_probe(task, perf), guess_rate_per_s=guess, **kwargs)
    return capacity_search(make_probe(task, perf), **kwargs)


def _result(task: PlanTask, found: CapacityResult, wall_s: float) -> PlanResult:
    metrics = dict(found.best.metrics) if found.best is not None else {}
    metrics["gpu_tdp_w"] = get_gpu(task.plan.gpu).tdp_w
    if found.short_probes:
        metrics["num_short_probes"] = len(found.short_probes)
    metrics.update(task.bounds)
    status, reason = OK, ""
    if found.below_need:
        need = found.upper_rate_per_s
        if task.at_target:
            reason = f"misses the SLO at the target {need:.4g} req/s ({found.limiting})"
        else:
            status = PRUNED
            reason = f"dominated: fails the SLO at {need:.3g} req/s, {task.need_reason}"
    elif task.at_target:
        metrics["at_rate_per_s"] = found.rate_per_s
    return PlanResult(
        plan=task.plan,
        status=status,
        reason=reason,
        capacity_per_s=found.rate_per_s,
        limiting=found.limiting,
        num_probes=found.num_probes,
        metrics=metrics,
        wall_s=wall_s,
    )
