"""Deployment search: enumerate, pre-filter, simulate survivors in waves, rank, Pareto.

1. ``enumerate_plans`` expands the ``SearchSpace``.
2. The analytical ``Prefilter`` marks plans *infeasible* (memory, unsupported dtype) or
   *pruned* (a latency lower bound above its target; for ``cost_at_rate``, a throughput bound
   below the target rate).
3. Survivors are ordered by their bound on the objective and evaluated in fixed-size waves
   (the first holds the most promising plan alone): a capacity search per plan, or with
   ``--target-rate`` one probe at the rate. Between waves, a plan whose *bound* cannot beat
   the best *simulated* plan is pruned as dominated (branch and bound), and every plan's
   first probe is at the rate it needs to beat the best per dollar: failing there prunes it
   after that probe. ``cost_at_rate`` bisects replica counts per family instead
   (``planner.families``). Probes stop once their p99 target is certainly lost
   (``planner.probe``); with ``bracketing``, short probes bracket a capacity before
   full-length ones (``capacity.bracketed_capacity_search``). Waves have a fixed size,
   independent of the executor, so the same plans are simulated whichever executor runs them.
4. Every result goes to the store as it completes; a re-run reuses stored results.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.perf import default_perf_model
from servesim.perf.types import PerfModel
from servesim.planner.analytic import Estimate, Prefilter
from servesim.planner.evaluate import (
    INFEASIBLE,
    OK,
    PRUNED,
    PlanResult,
    PlanTask,
    evaluate_plan,
)
from servesim.planner.executors import Executor, InProcessExecutor
from servesim.planner.families import bisect_families
from servesim.planner.outcome import SearchProgress, SearchReport
from servesim.planner.rank import TARGET_OBJECTIVES, check_objective, pareto_front, rank
from servesim.planner.reasons import reason_counts
from servesim.planner.scenario import Scenario
from servesim.planner.space import PlanSpec, SearchSpace, enumerate_plans
from servesim.planner.store import PlanStore
from servesim.specs.catalog import resolve_model

logger = logging.getLogger(__name__)

# Plans evaluated between two dominance checks. Fixed (not the worker count) so that which
# plans get simulated does not depend on the executor; 8 keeps a small pool busy.
DEFAULT_WAVE_SIZE = 8
# The capacity search never probes above this multiple of the analytical bound.
BOUND_SLACK = 1.5
# 2: feasibility from the engine's real settings, early-stopped probes, "need" probes.
# 3: cheap bracketing probes; per-phase knobs and placement in plan keys.
PLANNER_VERSION = 3


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How to search.

    Attributes:
        objective: see ``servesim.planner.rank``.
        target_rate_per_s: the rate ``cost_at_rate`` must reach.
        rel_tol: capacity-search tolerance.
        wave_size: plans per wave between dominance checks.
        exhaustive: simulate every survivor of the pre-filter (no branch and bound, and
            every plan's full capacity search).
        early_stop: end a probe once its p99 targets are certainly lost (same outcome).
        bracketing: short probes bracket each capacity before full-length ones
            (``capacity.bracketed_capacity_search``; capacities move within ``rel_tol``).
            Off by default: measured, it saves CPU on some multi-replica plans and costs
            more on others (the exhaustive README space: 364 against 291 CPU-s).
        from_bound: each capacity search starts at the plan's analytical bound and gallops
            from it (``capacity.gallop_capacity_search``; capacities move within ``rel_tol``).
    """

    objective: str = "goodput_per_dollar"
    target_rate_per_s: float | None = None
    rel_tol: float = 0.05
    wave_size: int = DEFAULT_WAVE_SIZE
    exhaustive: bool = False
    early_stop: bool = True
    bracketing: bool = False
    from_bound: bool = False


def search_inputs(scenario: Scenario, options: SearchOptions, perf: PerfModel) -> dict[str, Any]:
    """What a plan's result depends on (hashed into the store key)."""
    return {
        "planner_version": PLANNER_VERSION,
        "model": scenario.model,
        "workload": scenario.workload.model_dump(mode="json"),
        "criterion": {
            k: getattr(scenario.criterion, k) for k in scenario.criterion.__dataclass_fields__
        },
        "cache": scenario.cache.model_dump(mode="json"),
        "seed": scenario.seed,
        "requests_per_replica": scenario.requests_per_replica,
        "min_requests": scenario.min_requests,
        "rel_tol": options.rel_tol,
        "engine": scenario.engine,
        "target_rate_per_s": options.target_rate_per_s if at_target(options) else None,
        "early_stop": options.early_stop,
        "bracketing": options.bracketing,
        "perf": type(perf).__name__,
        # only when on: the default search's key (and stored results) stay as before
        **({"from_bound": True} if options.from_bound else {}),
    }


class _Search:
    def __init__(
        self,
        scenario: Scenario,
        options: SearchOptions,
        perf: PerfModel,
        executor: Executor,
        store: PlanStore | None,
        on_progress: Callable[[SearchProgress], None] | None,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.perf = perf
        self.executor = executor
        self.store = store
        self.on_progress = on_progress
        self.hash = store.begin_search(search_inputs(scenario, options, perf)) if store else ""
        self.cached = {r.plan.key(): r for r in store.results(self.hash)} if store else {}
        self.results: dict[str, PlanResult] = {}
        self.num_plans = 0
        self.num_prefiltered = 0  # results the pre-filter decided (no simulation)
        self.num_to_evaluate = 0
        self.is_prefiltered = False
        self.num_simulated = 0
        self.simulated_keys: list[str] = []
        self.num_resumed = 0
        self.best: PlanResult | None = None

    def record(self, result: PlanResult, *, write: bool) -> None:
        self.results[result.plan.key()] = result
        if write and self.store is not None:
            self.store.put(self.hash, result)
        if result.status == OK and result.capacity_per_s > 0:
            ranked = rank([r for r in (self.best, result) if r is not None], *self._objective())
            self.best = ranked[0]
        if self.is_prefiltered:  # pre-filter results are reported at once, when all are in
            self.progress()

    def progress(self) -> None:
        if self.on_progress is None:
            return
        statuses = [r.status for r in self.results.values()]
        self.on_progress(
            SearchProgress(
                num_plans=self.num_plans,
                num_done=len(statuses),
                num_pruned=statuses.count(PRUNED),
                num_infeasible=statuses.count(INFEASIBLE),
                num_failed=statuses.count("failed"),
                best=self.best,
                num_to_evaluate=self.num_to_evaluate,
                num_evaluated=len(statuses) - self.num_prefiltered,
                num_simulated=self.num_simulated,
            )
        )

    def _objective(self) -> tuple[str, float | None]:
        return self.options.objective, self.options.target_rate_per_s

    def dominated(self, est: Estimate) -> str | None:
        """Why ``est``'s plan cannot beat the best simulated plan (None: it might)."""
        best, opts = self.best, self.options
        if opts.exhaustive or best is None:
            return None
        if opts.objective == "goodput_per_dollar":
            if est.rate_upper_per_dollar_hour < best.capacity_per_dollar_hour:
                return (
                    f"dominated: bound {est.rate_upper_per_dollar_hour:.3g} req/s per $/h < "
                    f"{best.capacity_per_dollar_hour:.3g} simulated for {best.plan.label()}"
                )
        elif opts.objective == "cost_at_rate":
            # Strictly dearer only: an equal price may still win on latency (the tie-break).
            if est.plan.price_per_hour_usd > best.price_per_hour_usd:
                return f"dominated: dearer than {best.plan.label()}, which serves the rate"
        elif opts.objective == "latency":
            best_ttft = best.metrics.get("ttft_p99_s")
            if best_ttft is not None and est.ttft_p99_lower_s > best_ttft:
                return (
                    f"dominated: p99 TTFT >= {est.ttft_p99_lower_s:.3g} s (prefill alone) > "
                    f"{best_ttft:.3g} s simulated for {best.plan.label()}"
                )
        return None

    def prune(self, est: Estimate, why: str) -> None:
        """Record ``est``'s plan as pruned (dominated) without simulating it."""
        self.record(PlanResult(est.plan, PRUNED, why, metrics=_bound(est)), write=True)

    def need(self, est: Estimate) -> tuple[float | None, str]:
        """The rate ``est``'s plan must hold to be of use, and why (None: no such rate yet)."""
        opts = self.options
        if at_target(opts):
            return opts.target_rate_per_s, "the target rate"
        best = self.best
        if opts.exhaustive or best is None or opts.objective != "goodput_per_dollar":
            return None, ""
        rate = best.capacity_per_dollar_hour * est.plan.price_per_hour_usd
        why = (
            f"the rate it needs to beat {best.capacity_per_dollar_hour:.3g} req/s per $/h "
            f"of {best.plan.label()}"
        )
        return rate, why

    def task(self, est: Estimate) -> PlanTask:
        upper = est.rate_upper_per_s * BOUND_SLACK
        need, why = self.need(est)
        return PlanTask(
            scenario=self.scenario,
            plan=est.plan,
            start_rate_per_s=est.rate_upper_per_s * 0.5,
            max_rate_per_s=upper,
            rel_tol=self.options.rel_tol,
            perf=None if self.perf is default_perf_model() else self.perf,
            bounds=_bound(est),
            need_rate_per_s=need,
            need_reason=why,
            at_target=at_target(self.options),
            early_stop=self.options.early_stop,
            bracketing=self.options.bracketing,
            from_bound=self.options.from_bound,
        )

    def run_wave(self, wave: Sequence[Estimate]) -> None:
        todo: list[PlanTask] = []
        for est in wave:
            cached = self.cached.get(est.plan.key())
            # Any stored outcome of a simulation is reused, "dominated" ones included: the
            # search is deterministic, so the best plan each was measured against is the same.
            if cached is not None:
                self.num_resumed += 1
                self.record(cached, write=False)
            else:
                todo.append(self.task(est))
        for _, result in self.executor.run(evaluate_plan, todo):
            self.num_simulated += 1
            self.simulated_keys.append(result.plan.key())
            self.record(result, write=True)


def at_target(options: SearchOptions) -> bool:
    """Whether plans are evaluated at the target rate (one probe) rather than by capacity."""
    return options.target_rate_per_s is not None and options.objective in TARGET_OBJECTIVES


def _order_key(est: Estimate, options: SearchOptions) -> tuple[float, ...]:
    """Most promising first, so the dominance checks prune as early as possible."""
    if options.objective == "goodput_per_dollar":
        return (-est.rate_upper_per_dollar_hour,)
    if options.objective == "latency":
        return (est.ttft_p99_lower_s, est.plan.price_per_hour_usd)
    if options.objective == "energy_per_token":
        # At a fixed rate, fewer watts provisioned means less energy per token (idle included).
        return (est.plan.tdp_w, est.plan.price_per_hour_usd)
    return (est.plan.price_per_hour_usd, -est.rate_upper_per_s)


def run_search(
    scenario: Scenario,
    space: SearchSpace,
    *,
    options: SearchOptions | None = None,
    executor: Executor | None = None,
    store: PlanStore | None = None,
    perf: PerfModel | None = None,
    on_progress: Callable[[SearchProgress], None] | None = None,
) -> SearchReport:
    """Search ``space`` for the best deployments of ``scenario`` (module docstring)."""
    options = options or SearchOptions()
    check_objective(options.objective, options.target_rate_per_s)
    perf = perf if perf is not None else default_perf_model()
    search = _Search(scenario, options, perf, executor or InProcessExecutor(), store, on_progress)
    prefilter = Prefilter(scenario, perf, scenario.shape())

    def holds_model(plan: PlanSpec) -> bool:
        return prefilter.estimate(plan).status != INFEASIBLE

    plans = list(enumerate_plans(space, resolve_model(scenario.model), holds_model))
    search.num_plans = len(plans)
    survivors = _prefilter(search, prefilter, plans, options)
    search.num_prefiltered = len(search.results)
    search.num_to_evaluate = len(survivors)
    search.is_prefiltered = True
    search.progress()
    if options.objective == "cost_at_rate" and at_target(options) and not options.exhaustive:
        bisect_families(search, survivors, options.wave_size, search.prune)
    else:
        _run_waves(search, survivors, options.wave_size)
    results = [search.results[p.key()] for p in plans]
    return SearchReport(
        results=results,
        ranked=rank(results, options.objective, options.target_rate_per_s),
        pareto=pareto_front(results),
        num_simulated=search.num_simulated,
        num_resumed=search.num_resumed,
        prune_reasons=reason_counts(results),
        search_hash=search.hash,
        simulated_keys=tuple(search.simulated_keys),
    )


def _prefilter(
    search: _Search, prefilter: Prefilter, plans: Sequence[PlanSpec], options: SearchOptions
) -> list[Estimate]:
    """Step 2 (module docstring): record every plan the bounds decide (infeasible, pruned,
    or for a target-rate objective a throughput bound below the rate) and return the
    survivors, most promising first (bound on the objective, then plan key)."""
    survivors: list[Estimate] = []
    for plan in plans:
        est = prefilter.estimate(plan)
        target = options.target_rate_per_s
        # Every target-rate objective needs the plan to serve the rate: its bound must.
        if est.status == OK and at_target(options) and est.rate_upper_per_s < (target or 0.0):
            reason = f"throughput bound {est.rate_upper_per_s:.3g} req/s below the target rate"
            est = Estimate(plan, PRUNED, reason, **_est_fields(est))
        if est.status == OK:
            survivors.append(est)
        else:
            search.record(PlanResult(plan, est.status, est.reason, metrics=_bound(est)), write=True)
    survivors.sort(key=lambda e: (*_order_key(e, options), e.plan.key()))
    return survivors


def _run_waves(search: _Search, survivors: list[Estimate], wave_size: int) -> None:
    pending = list(survivors)
    # The most promising plan runs alone first: every later plan then has a best to beat.
    size = 1
    while pending:
        wave: list[Estimate] = []
        size, limit = wave_size, size
        while pending and len(wave) < limit:
            est = pending.pop(0)
            why = search.dominated(est)
            if why is None:
                wave.append(est)
            else:
                search.prune(est, why)
        if wave:
            search.run_wave(wave)


def _est_fields(est: Estimate) -> dict[str, Any]:
    return {
        "max_kv_tokens": est.max_kv_tokens,
        "max_batch": est.max_batch,
        "ttft_p99_lower_s": est.ttft_p99_lower_s,
        "tpot_lower_s": est.tpot_lower_s,
        "rate_upper_per_s": est.rate_upper_per_s,
    }


def _bound(est: Estimate) -> dict[str, Any]:
    return {
        f"bound_{k}": (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in est.to_dict().items()
    }
