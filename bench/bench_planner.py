"""Planner speed: pre-filter plans/s, the README plan example and the 64-H100 target question.

Run: ``python bench/bench_planner.py [--quick] [--target] [--exhaustive] [--pool]``. Prints:

- pre-filter: plans enumerated and estimated per second, cold caches, on a large colocated
  space (Llama-3.1-70B, H100/A100/H200 up to 64 GPUs each, tp 1-8, pp 1-4, bf16/fp8,
  scheduler variants) and on a disaggregated one with every per-pool dimension;
- README example (``plan --model llama-3.1-70b --gpus h100-sxm:8,a100-80gb:8 --slo-ttft-p99 2
  --slo-tpot-p99 0.1``): CPU seconds (this process and its workers), wall, winner, counts;
- ``--target``: "20 req/s of Llama-3.1-70B at p99 TTFT under 2 s on up to 64 H100s"
  (``--objective cost_at_rate --target-rate 20 --gpus h100-sxm:64 --tp 4,8``);
- ``--exhaustive``: every feasible plan of the README space simulated (plans/s).
- ``--thousand [--sample K]``: a space of >= 1,000 feasible plans (five models on H100, A100
  and L40S, up to 8 of each, tp 1-8, pp 1-2, four scheduler variants), each fully simulated
  at half its analytical throughput bound (one full-length probe, the ``--target-rate``
  unit); ``--sample K`` simulates every K-th plan only and extrapolates (said in the output);
  ``--requests-per-replica N`` shortens every probe (default: the planner's 1,000);
  ``--capacity`` runs each plan's full capacity search instead (``--from-bound``: from the bound).

``--pool`` runs the searches on the local process pool (one worker per core) instead of in
this process; CPU seconds then include the workers'. ``--probe-stats`` (in-process only)
times every probe and prints where they go: probes per plan, held / failed / stopped early,
CPU per probe by outcome and by pipeline depth. ``--from-bound`` starts each capacity search
at the analytical bound and gallops from it (``capacity.gallop_capacity_search``).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections import defaultdict
from typing import Any

from servesim.perf import RooflinePerfModel
from servesim.planner import evaluate as evaluate_module
from servesim.planner.analytic import Prefilter
from servesim.planner.evaluate import PlanTask, evaluate_plan
from servesim.planner.executors import Executor, InProcessExecutor, LocalPoolExecutor
from servesim.planner.scenario import DEFAULT_REQUESTS_PER_REPLICA, Scenario, SLOCriterion
from servesim.planner.search import BOUND_SLACK, SearchOptions, SearchReport, run_search
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


PREFILTER_SPACE = SearchSpace(
    gpus=(("h100-sxm", 64), ("a100-80gb", 64), ("h200", 64)),
    tp_options=(1, 2, 4, 8),
    pp_options=(1, 2, 4),
    dtypes=("bf16", "fp8"),
    schedulers=scheduler_grid((64, 256), (None, 2048, 8192), (False, True)),
)
# Disaggregated plans with every per-pool dimension: the prefill pool's own GPU type, TP, PP,
# dtype and scheduler, and pack/spread placement on two networks.
POOLS_SPACE = SearchSpace(
    gpus=(("h100-sxm", 8), ("a100-80gb", 8)),
    tp_options=(2, 4, 8),
    pp_options=(1, 2),
    dtypes=("bf16", "fp8"),
    schedulers=scheduler_grid((64, 256)),
    disaggregated=True,
    per_phase_knobs=True,
    placements=("pack", "spread"),
    networks=(None, "roce-200"),
)


class ProbeStats:
    """Times every probe of this process (wraps ``evaluate.simulate_plan``; results unchanged)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, str, float]] = []  # model+plan, pp, outcome, CPU-s
        self._inner = evaluate_module.simulate_plan
        evaluate_module.simulate_plan = self._timed  # type: ignore[assignment]

    def _timed(self, scenario: Scenario, plan: Any, rate: float, perf: Any, **kw: Any) -> Any:
        started = time.process_time()
        summary = self._inner(scenario, plan, rate, perf, **kw)
        watch = kw.get("stop_when")
        if watch is not None and watch.stopped:
            outcome = "stopped early"
        else:
            outcome = "held" if scenario.criterion.check(summary)[0] else "failed"
        key = f"{scenario.model} {plan.key()}"  # plans of different models share a key
        self.rows.append((key, plan.pp, outcome, time.process_time() - started))
        return summary

    def report(self) -> None:
        """Print probes per plan and CPU per probe by outcome and by pipeline depth."""
        per_plan: dict[str, int] = defaultdict(int)
        groups: dict[str, list[float]] = defaultdict(list)
        for key, pp, outcome, cpu in self.rows:
            per_plan[key] += 1
            groups[outcome].append(cpu)
            groups[f"pp={pp}"].append(cpu)
        counts = sorted(per_plan.values())
        total = sum(r[3] for r in self.rows)
        print(
            f"  probes: {len(self.rows)} on {len(counts)} plans ({len(self.rows) / len(counts):.2f}"
            f" per plan, max {counts[-1]}), {total:.1f} CPU-s in probes"
        )
        for name, cpus in sorted(groups.items()):
            print(
                f"    {name}: {len(cpus)} probes, {sum(cpus):.1f} CPU-s "
                f"({sum(cpus) / total:.0%}), {sum(cpus) / len(cpus):.2f} CPU-s per probe"
            )


def bench_prefilter(name: str, space: SearchSpace) -> None:
    """Enumerate ``space`` and pre-filter every plan (cold caches); print plans/s."""
    started = time.perf_counter()
    plans = list(enumerate_plans(space, resolve_model(SCENARIO.model)))
    listed = time.perf_counter()
    pre = Prefilter(SCENARIO, RooflinePerfModel(), SCENARIO.shape())
    statuses: dict[str, int] = {}
    for plan in plans:
        est = pre.estimate(plan)
        statuses[est.status] = statuses.get(est.status, 0) + 1
    wall = time.perf_counter() - listed
    print(
        f"pre-filter, {name}: {len(plans):,} plans in {wall:.2f} s = {len(plans) / wall:,.0f} "
        f"plans/s (enumeration {listed - started:.2f} s); {statuses}"
    )


THOUSAND_MODELS = ("llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "qwen2.5-32b", "llama-3.1-70b")
THOUSAND_SPACE = SearchSpace(
    gpus=(("h100-sxm", 8), ("a100-80gb", 8), ("l40s", 8)),
    tp_options=(1, 2, 4, 8),
    pp_options=(1, 2),
    schedulers=scheduler_grid((64, 256), (None, 2048), (None, True)),
)


def thousand_tasks(
    requests_per_replica: int = DEFAULT_REQUESTS_PER_REPLICA,
    capacity: bool = False,
    from_bound: bool = False,
) -> list[PlanTask]:
    """One task per feasible plan of the five models' spaces (pre-filter ``ok``): one probe at
    half the bound, or with ``capacity`` a capacity search from scratch (as ``--exhaustive``
    runs it: from half the bound, never above 1.5 x it; ``from_bound``: from the bound)."""
    tasks = []
    criterion = SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1)
    for model in THOUSAND_MODELS:
        scenario = Scenario(model, criterion=criterion, requests_per_replica=requests_per_replica)
        pre = Prefilter(scenario, RooflinePerfModel(), scenario.shape())
        for plan in enumerate_plans(THOUSAND_SPACE, resolve_model(model)):
            est = pre.estimate(plan)
            if est.status != "ok":
                continue
            rate = 0.5 * est.rate_upper_per_s
            if capacity:
                upper = est.rate_upper_per_s * BOUND_SLACK
                tasks.append(PlanTask(scenario, plan, rate, upper, from_bound=from_bound))
            else:
                tasks.append(PlanTask(scenario, plan, rate, need_rate_per_s=rate, at_target=True))
    return tasks


def bench_thousand(sample: int, pool: bool, requests_per_replica: int, **kinds: bool) -> None:
    """Simulate every ``sample``-th plan of ``thousand_tasks`` and extrapolate to all."""
    wall0 = time.perf_counter()
    tasks = thousand_tasks(requests_per_replica, **kinds)
    build_s = time.perf_counter() - wall0
    chosen = tasks[::sample]
    executor: Executor = LocalPoolExecutor() if pool else InProcessExecutor()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    statuses: dict[str, int] = {}
    try:
        for _, result in executor.run(evaluate_plan, chosen):
            key = result.status if result.capacity_per_s > 0 else f"{result.status} (missed)"
            statuses[key] = statuses.get(key, 0) + 1
    finally:
        executor.close()
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    num_requests = sum(t.scenario.num_requests(t.plan) for t in chosen)
    kind = ", ".join(k for k, on in kinds.items() if on) or "one probe"
    print(
        f"thousand ({kind}; {requests_per_replica} requests per replica, {num_requests:,} "
        f"per round of probes): {len(tasks):,} feasible plans ({build_s:.1f} s to build and "
        "pre-filter); "
        f"simulated {len(chosen):,} ({executor.name}) in {cpu:.1f} CPU-s, {wall:.1f} s wall = "
        f"{len(chosen) / wall:.2f} plans/s, {cpu / len(chosen):.2f} CPU-s per plan; {statuses}"
    )
    if sample > 1:
        cores = os.cpu_count() or 1
        print(
            f"  extrapolated (every {sample}th plan simulated): all {len(tasks):,} plans "
            f"~{cpu / len(chosen) * len(tasks):,.0f} CPU-s, "
            f"~{cpu / len(chosen) * len(tasks) / cores / 60:.1f} min on {cores} cores; "
            f"1,000 plans ~{cpu / len(chosen) * 1000 / cores / 60:.1f} min"
        )


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
    parser.add_argument("--bracketing", action="store_true", help="short bracketing probes")
    parser.add_argument("--thousand", action="store_true", help="only the 1,000-plan bench")
    parser.add_argument("--sample", type=int, default=1, help="--thousand: every K-th plan")
    parser.add_argument(
        "--requests-per-replica",
        type=int,
        default=DEFAULT_REQUESTS_PER_REPLICA,
        help="--thousand: probe length per replica",
    )
    parser.add_argument("--capacity", action="store_true", help="--thousand: full searches")
    parser.add_argument("--probe-stats", action="store_true", help="time every probe")
    parser.add_argument("--from-bound", action="store_true", help="searches start at the bound")
    args = parser.parse_args()
    stats = ProbeStats() if args.probe_stats and not args.pool else None
    try:
        run_benches(args)
    finally:
        if stats is not None and stats.rows:
            stats.report()


def run_benches(args: argparse.Namespace) -> None:
    """The benches ``args`` asks for."""
    if args.thousand:
        kinds = {"capacity": args.capacity, "from_bound": args.from_bound}
        bench_thousand(max(1, args.sample), args.pool, args.requests_per_replica, **kinds)
        return
    bench_prefilter("colocated", PREFILTER_SPACE)
    bench_prefilter("disaggregated, per-pool knobs and placement", POOLS_SPACE)
    if args.quick:
        return
    bracketing, from_bound = args.bracketing, args.from_bound
    options = SearchOptions(bracketing=bracketing, from_bound=from_bound)
    timed_search("README plan example", SCENARIO, README_SPACE, options, args.pool)
    if args.target:
        options = SearchOptions(
            objective="cost_at_rate",
            target_rate_per_s=20.0,
            bracketing=bracketing,
            from_bound=from_bound,
        )
        timed_search("20 req/s on <= 64 H100", TARGET_SCENARIO, TARGET_SPACE, options, args.pool)
    if args.exhaustive:
        options = SearchOptions(exhaustive=True, bracketing=bracketing, from_bound=from_bound)
        timed_search("exhaustive README space", SCENARIO, README_SPACE, options, args.pool)


if __name__ == "__main__":
    main()
