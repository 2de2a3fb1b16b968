"""Planner speed: analytical pre-filter plans/s and full capacity-search plans/s.

Run: ``python bench/bench_planner.py [--quick]``. Prints:

- pre-filter: plans estimated per second on a large space (Llama-3.1-70B, H100/A100/L40S...
  up to 64 GPUs each, tp 1-8, pp 1-4, bf16/fp8, scheduler variants), cold caches;
- capacity search: plans per second of a full search (every feasible plan simulated,
  ``--exhaustive``) on the issue's must-show space, in-process and on the local pool.
"""

from __future__ import annotations

import argparse
import os
import time

from servesim.perf import RooflinePerfModel
from servesim.planner.analytic import Prefilter
from servesim.planner.executors import InProcessExecutor, LocalPoolExecutor
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import SearchSpace, enumerate_plans, scheduler_grid
from servesim.specs.catalog import resolve_model

SCENARIO = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1))


def bench_prefilter() -> None:
    space = SearchSpace(
        gpus=(("h100-sxm", 64), ("a100-80gb", 64), ("h200", 64)),
        tp_options=(1, 2, 4, 8),
        pp_options=(1, 2, 4),
        dtypes=("bf16", "fp8"),
        schedulers=scheduler_grid((64, 256), (None, 2048, 8192), (False, True)),
    )
    plans = list(enumerate_plans(space, resolve_model(SCENARIO.model)))
    pre = Prefilter(SCENARIO, RooflinePerfModel(), SCENARIO.shape())
    started = time.perf_counter()
    statuses: dict[str, int] = {}
    for plan in plans:
        est = pre.estimate(plan)
        statuses[est.status] = statuses.get(est.status, 0) + 1
    wall = time.perf_counter() - started
    print(f"pre-filter: {len(plans):,} plans in {wall:.2f} s = {len(plans) / wall:,.0f} plans/s")
    print(f"  outcome: {statuses}")


def bench_search(workers: int | None) -> None:
    space = SearchSpace(gpus=(("h100-sxm", 8), ("a100-80gb", 8)))
    options = SearchOptions(exhaustive=True)
    executor = LocalPoolExecutor(workers) if workers else InProcessExecutor()
    started = time.perf_counter()
    try:
        report = run_search(SCENARIO, space, options=options, executor=executor)
    finally:
        executor.close()
    wall = time.perf_counter() - started
    probes = sum(r.num_probes for r in report.results)
    name = f"pool x{workers}" if workers else "in-process"
    print(
        f"capacity search ({name}): {report.num_simulated} plans simulated "
        f"({probes} probes) in {wall:.1f} s = {report.num_simulated / wall:.2f} plans/s, "
        f"{probes / wall:.1f} simulations/s; {len(report.results)} plans in the space"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pre-filter only (CI smoke)")
    args = parser.parse_args()
    bench_prefilter()
    if not args.quick:
        bench_search(None)
        bench_search(os.cpu_count() or 1)


if __name__ == "__main__":
    main()
