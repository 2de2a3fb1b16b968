"""Feed the Mélange integer program from simulations: size slices and per-slice capacities.

The workload's requests are split into slices by prompt and output length (quantile bins of a
seeded sample); each slice is represented by its mean lengths and its share of the arrivals.
For every candidate instance type (one replica config) and slice, a capacity search on a
Poisson stream of that slice's requests gives ``c_os``; ``melange.solve_mix`` then picks the
cheapest mix for the target rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from servesim.core.rng import RandomStreams
from servesim.perf.types import PerfModel
from servesim.planner.analytic import Prefilter
from servesim.planner.evaluate import OK, PlanResult, PlanTask, evaluate_plan
from servesim.planner.executors import Executor, InProcessExecutor
from servesim.planner.melange import MixAllocation, MixOption, solve_mix
from servesim.planner.scenario import NUM_SHAPE_SAMPLES, Scenario
from servesim.planner.search import BOUND_SLACK
from servesim.planner.space import PlanSpec
from servesim.workload.config import WorkloadConfig


@dataclass(frozen=True, slots=True)
class SizeSlice:
    """A slice of the request-size distribution.

    Attributes:
        prompt_tokens: mean prompt length in the slice.
        output_tokens: mean output length in the slice.
        fraction: share of all requests.
    """

    prompt_tokens: int
    output_tokens: int
    fraction: float

    def label(self) -> str:
        """``in~P/out~O (f%)``."""
        return f"in~{self.prompt_tokens}/out~{self.output_tokens} ({self.fraction:.0%})"


@dataclass(frozen=True, slots=True)
class MixReport:
    """Slices, options, the capacity matrix and the chosen allocation."""

    slices: tuple[SizeSlice, ...]
    options: tuple[MixOption, ...]
    capacity: tuple[tuple[float, ...], ...]
    target_rate_per_s: float
    allocation: MixAllocation


def size_slices(
    scenario: Scenario, num_prompt_bins: int = 3, num_output_bins: int = 2
) -> tuple[SizeSlice, ...]:
    """Quantile bins of prompt x output length from a seeded sample of the workload."""
    sample = scenario.workload.with_rate(1.0).model_copy(update={"num_requests": NUM_SHAPE_SAMPLES})
    pairs = np.asarray(
        [(r.num_prompt_tokens, r.num_output_tokens) for r in sample.build(RandomStreams(0))],
        dtype=np.float64,
    )
    p_edges = np.quantile(pairs[:, 0], np.linspace(0, 1, num_prompt_bins + 1))
    o_edges = np.quantile(pairs[:, 1], np.linspace(0, 1, num_output_bins + 1))
    p_bin = np.clip(np.searchsorted(p_edges, pairs[:, 0], side="right") - 1, 0, num_prompt_bins - 1)
    o_bin = np.clip(np.searchsorted(o_edges, pairs[:, 1], side="right") - 1, 0, num_output_bins - 1)
    slices = []
    for i in range(num_prompt_bins):
        for j in range(num_output_bins):
            inside = (p_bin == i) & (o_bin == j)
            if inside.any():
                mean_p, mean_o = pairs[inside].mean(axis=0)
                share = float(inside.mean())
                slices.append(SizeSlice(round(mean_p), max(1, round(mean_o)), share))
    return tuple(slices)


def slice_scenario(scenario: Scenario, piece: SizeSlice) -> Scenario:
    """``scenario`` with Poisson arrivals of ``piece``-sized requests only."""
    workload = WorkloadConfig.model_validate(
        {
            "name": f"slice-{piece.prompt_tokens}-{piece.output_tokens}",
            "arrival": {"kind": "poisson", "rate_per_s": 1.0},
            "lengths": {
                "kind": "independent",
                "prompt": {"kind": "fixed", "tokens": piece.prompt_tokens},
                "output": {"kind": "fixed", "tokens": piece.output_tokens},
            },
        }
    )
    return dataclasses.replace(scenario, workload=workload)


def mix_candidates(ranked: Sequence[PlanResult]) -> list[PlanSpec]:
    """One instance type per GPU type: its best-ranked single-replica colocated plan."""
    best: dict[str, PlanSpec] = {}
    for result in ranked:
        plan = result.plan
        if plan.mode == "colocated" and plan.replicas == 1 and plan.gpu not in best:
            best[plan.gpu] = plan
    return list(best.values())


def plan_mix(
    scenario: Scenario,
    candidates: Sequence[PlanSpec],
    target_rate_per_s: float,
    *,
    available: dict[str, int] | None = None,
    slices: Sequence[SizeSlice] | None = None,
    executor: Executor | None = None,
    perf: PerfModel | None = None,
) -> MixReport:
    """Simulate each candidate (one replica) on each slice, then solve the mix.

    Args:
        scenario: the search's scenario (its workload gives the slices).
        candidates: one-replica plans, one per instance type (e.g. the best per GPU type).
        target_rate_per_s: the total load to serve.
        available: GPUs available per GPU name (caps instances); None: unlimited.
        slices: the slices (default: ``size_slices(scenario)``).
        executor: runs the capacity searches.
        perf: a custom perf model (None: the default).
    """
    from servesim.perf import default_perf_model

    perf_model = perf if perf is not None else default_perf_model()
    pieces = tuple(slices) if slices is not None else size_slices(scenario)
    matrix = _capacity_matrix(scenario, candidates, pieces, executor, perf, perf_model)
    options = tuple(_option(p, available) for p in candidates)
    rates = [target_rate_per_s * piece.fraction for piece in pieces]
    allocation = solve_mix(options, rates, matrix, available)
    return MixReport(pieces, options, matrix, target_rate_per_s, allocation)


def _capacity_matrix(
    scenario: Scenario,
    candidates: Sequence[PlanSpec],
    pieces: Sequence[SizeSlice],
    executor: Executor | None,
    perf: PerfModel | None,
    perf_model: PerfModel,
) -> tuple[tuple[float, ...], ...]:
    """``c_os``: the capacity of one replica of each candidate on each slice alone (req/s;
    0.0 where the bound rules the slice out or the search finds no rate that holds).

    ``perf_model`` prices the bounds; ``perf`` (None: the default) runs the searches."""
    tasks = []
    for plan in candidates:
        single = dataclasses.replace(plan, replicas=1)
        for piece in pieces:
            sub = slice_scenario(scenario, piece)
            est = Prefilter(sub, perf_model, sub.shape()).estimate(single)
            start = est.rate_upper_per_s * 0.5 if est.status == OK else 0.0
            tasks.append((est.status == OK and start > 0, sub, single, est, start))
    runnable = [
        PlanTask(sub, single, start, est.rate_upper_per_s * BOUND_SLACK, perf=perf)
        for ok, sub, single, est, start in tasks
        if ok
    ]
    results = dict((executor or InProcessExecutor()).run(evaluate_plan, runnable))
    caps: list[float] = []
    k = 0
    for ok, *_ in tasks:
        caps.append(results[k].capacity_per_s if ok and results[k].status == OK else 0.0)
        k += 1 if ok else 0
    return tuple(
        tuple(caps[i * len(pieces) : (i + 1) * len(pieces)]) for i in range(len(candidates))
    )


def _option(plan: PlanSpec, available: dict[str, int] | None) -> MixOption:
    single = dataclasses.replace(plan, replicas=1)
    limit = None
    if available is not None and plan.gpu in available:
        limit = available[plan.gpu] // single.num_gpus
    return MixOption(single.label(), single.price_per_hour_usd, limit, plan.gpu, single.num_gpus)
