"""Planner speed: pre-filter plans/s, the README plan example and the 64-H100 target question.

Run: ``python bench/bench_planner.py [--quick] [--target] [--exhaustive] [--pool]``. Prints:

- pre-filter: plans estimated per second on a large space (Llama-3.1-70B, H100/A100/H200
  up to 64 GPUs each, tp 1-8, pp 1-4, bf16/fp8, scheduler variants), cold caches;
- README example (``plan --model llama-3.1-70b --gpus h100-sxm:8,a100-80gb:8 --slo-ttft-p99 2
  --slo-tpot-p99 0.1``): CPU seconds (this process and its workers), wall, winner, counts;
- ``--target``: "20 req/s of Llama-3.1-70B at p99 TTFT under 2 s on up to 64 H100s"
  (``--objective cost_at_rate --target-rate 20 --gpus h100-sxm:64 --tp 4,8``);
- ``--exhaustive``: every feasible plan of the README space simulated (plans/s).

``--pool`` runs the searches on the local process pool (one worker per core) instead of in
this process; CPU seconds then include the workers'.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from servesim.perf import RooflinePerfModel
from servesim.planner.analytic import Prefilter
from servesim.planner.executors import Executor, InProcessExecutor, LocalPoolExecutor
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.search import SearchOptions, SearchReport, run_search
from servesim.planner.space import SearchSpace, enumerate_plans, scheduler_grid
from servesim.specs.catalog import resolve_model

SCENARIO = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1))
README_SPACE = SearchSpace(gpus=(("h100-sxm", 8), ("a100-80gb", 8)))
TARGET_SCENARIO = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0))
TARGET_SPACE = SearchSpace(gpus=(("h100-sxm", 64),), tp_options=(4, 8))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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


def timed_search(
    name: str, scenario: Scenario, space: SearchSpace, options: SearchOptions, pool: bool
) -> SearchReport:
    """Run one search and print its CPU seconds, wall, winner and counts."""
    executor: Executor = LocalPoolExecutor() if pool else InProcessExecutor()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    try:
        report = run_search(scenario, space, options=options, executor=executor)
    finally:
        executor.close()  # joins the workers, so their CPU time is counted
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    probes = sum(r.num_probes for r in report.results)
    winner = report.ranked[0].plan.label() if report.ranked else "none"
    print(
        f"{name} ({executor.name}): {cpu:.1f} CPU-s, {wall:.1f} s wall; winner {winner}; "
        f"{len(report.results)} plans, {report.num_simulated} simulated ({probes} probes), "
        f"{report.count('pruned')} pruned, {report.count('infeasible')} infeasible"
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pre-filter only (CI smoke)")
    parser.add_argument("--target", action="store_true", help="also the 64-H100 question")
    parser.add_argument("--exhaustive", action="store_true", help="also simulate every plan")
    parser.add_argument("--pool", action="store_true", help=f"process pool ({os.cpu_count()})")
    args = parser.parse_args()
    bench_prefilter()
    if args.quick:
        return
    timed_search("README plan example", SCENARIO, README_SPACE, SearchOptions(), args.pool)
    if args.target:
        options = SearchOptions(objective="cost_at_rate", target_rate_per_s=20.0)
        timed_search("20 req/s on <= 64 H100", TARGET_SCENARIO, TARGET_SPACE, options, args.pool)
    if args.exhaustive:
        options = SearchOptions(exhaustive=True)
        timed_search("exhaustive README space", SCENARIO, README_SPACE, options, args.pool)


if __name__ == "__main__":
    main()
