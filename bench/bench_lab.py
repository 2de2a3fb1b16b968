"""Policy-lab speed and the fast mode's fidelity.

Run: ``python bench/bench_lab.py [--suite chat] [--workers 2]``. Prints:

- evaluator throughput on the suite: runs (one scenario x seed, each in its own forked,
  limited child) per minute and whole-suite evaluations per minute, in-process (one worker)
  and on a local pool of ``--workers`` processes;
- the fast (screening) mode's rank agreement with the full mode: Kendall's tau between the
  two rankings of a panel of built-in policies and knob variants, and whether the best
  policy is the same.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from scipy.stats import kendalltau

from servesim.lab import evaluate_many, load_suite
from servesim.lab.suites import suite_runs
from servesim.planner.executors import LocalPoolExecutor

# Built-in schedulers and some of their knobs: a panel with real spread (FCFS vs chunked vs
# reserving vs priority, small vs large budgets) for the rank comparison.
SCHEDULER_PANEL: list[dict[str, Any]] = [
    {"name": "vllm", "scheduler": {"kind": "vllm"}},
    {"name": "vllm-seqs32", "scheduler": {"kind": "vllm", "max_num_seqs": 32}},
    {"name": "vllm-v1", "scheduler": {"kind": "vllm", "version": "v1"}},
    {"name": "sarathi-256", "scheduler": {"kind": "sarathi", "chunk_size": 256}},
    {"name": "sarathi-512", "scheduler": {"kind": "sarathi", "chunk_size": 512}},
    {"name": "sarathi-2048", "scheduler": {"kind": "sarathi", "chunk_size": 2048}},
    {"name": "orca", "scheduler": {"kind": "orca"}},
    {"name": "orca-seqs16", "scheduler": {"kind": "orca", "max_num_seqs": 16}},
    {"name": "static-8", "scheduler": {"kind": "static"}},
    {"name": "static-32", "scheduler": {"kind": "static", "max_num_seqs": 32}},
    {"name": "fair", "scheduler": {"kind": "fair"}},
    {"name": "priority", "scheduler": {"kind": "priority"}},
]
ROUTER_PANEL: list[str] = [
    "round_robin",
    "random",
    "least_outstanding_requests",
    "least_outstanding_tokens",
    "least_kv_usage",
    "power_of_two",
    "prefix_affinity",
    "slo_aware",
]


def bench_throughput(suite: str, workers: int) -> None:
    """Runs and suite evaluations per minute, one worker and a pool."""
    num_runs = len(suite_runs(load_suite(suite)))
    policies = ["vllm", "sarathi", "orca", "fair"]
    for label, executor in (("in-process", "inline"), (f"pool x{workers}", "pool")):
        pool = LocalPoolExecutor(workers) if executor == "pool" else None
        try:
            if pool is not None:  # start the workers outside the timing (a search keeps them)
                evaluate_many(["vllm"], suite, fast=True, executor=pool)
            cpu_before = _cpu_s()
            started = time.perf_counter()
            evaluate_many(policies, suite, executor=pool or "inline")
            elapsed = time.perf_counter() - started
        finally:
            if pool is not None:
                pool.close()  # reaps the workers: their CPU time joins ours
        cpu = _cpu_s() - cpu_before
        runs = num_runs * len(policies)
        print(
            f"{suite} {label:>12}: {runs / elapsed * 60:7.1f} runs/min, "
            f"{len(policies) / elapsed * 60:6.2f} full-suite evaluations/min "
            f"({runs} runs in {elapsed:.1f} s wall, {cpu / runs:.3f} CPU s per run; "
            f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )


def _cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (the forked runs, the pool)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_rank_agreement(suite: str, workers: int) -> None:
    """Kendall's tau between the full and the fast mode's rankings of the panel."""
    is_routing = load_suite(suite).baselines[0] in ROUTER_PANEL
    panel: list[Any] = ROUTER_PANEL if is_routing else SCHEDULER_PANEL
    names = [p if isinstance(p, str) else p["name"] for p in panel]
    pool = LocalPoolExecutor(workers)
    try:
        started = time.perf_counter()
        full = evaluate_many(panel, suite, executor=pool)
        mid = time.perf_counter()
        fast = evaluate_many(panel, suite, fast=True, executor=pool)
        end = time.perf_counter()
    finally:
        pool.close()
    full_u = [s.utility for s in full]
    fast_u = [s.utility for s in fast]
    tau = kendalltau(full_u, fast_u).statistic
    best_full = names[max(range(len(names)), key=full_u.__getitem__)]
    best_fast = names[max(range(len(names)), key=fast_u.__getitem__)]
    print(
        f"{suite}: Kendall tau fast vs full = {tau:.3f} over {len(names)} policies "
        f"(goodput); best full {best_full}, best fast {best_fast}; "
        f"full {mid - started:.1f} s, fast {end - mid:.1f} s ({(mid - started) / (end - mid):.1f}x)"
    )


def main() -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", action="append", help="Suite(s) (default: chat).")
    parser.add_argument("--workers", type=int, default=2, help="Pool size (default 2).")
    parser.add_argument("--skip-throughput", action="store_true", help="Only rank agreement.")
    parser.add_argument("--skip-rank", action="store_true", help="Only throughput.")
    args = parser.parse_args()
    suites = args.suite or ["chat"]
    if not args.skip_throughput:
        bench_throughput(suites[0], args.workers)
    for suite in [] if args.skip_rank else suites:
        bench_rank_agreement(suite, args.workers)


if __name__ == "__main__":
    main()
