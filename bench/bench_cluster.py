"""Cluster simulation speed: 16 replicas of Llama-3.1-8B on H100, 100,000 ShareGPT requests.

Run: ``python bench/bench_cluster.py [--router NAME] [--num-requests N]``; prints wall time,
simulated requests per wall second and the run's throughput. Target: under 60 s on one core.

Disaggregated row: ``--disagg 2:4`` runs 2 prefill and 4 decode replicas (the rate is per
replica, all six counted) and prints the fraction of decode iterations skipped;
``--no-skip`` steps every iteration (the CPU seconds with and without decode skip-ahead).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.core.rng import RandomStreams
from servesim.metrics import summarize
from servesim.perf import RooflinePerfModel
from servesim.workload.config import WorkloadConfig


def main() -> None:
    """Time one cluster run (16 unified replicas by default)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default="round_robin")
    parser.add_argument("--num-requests", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=16)
    # 2.5 req/s per replica: ~80% of one replica's long-run saturated rate on this workload
    # (3.0 req/s measured over 3,000 requests with the RooflinePerfModel)
    parser.add_argument("--rate-per-replica", type=float, default=2.5)
    parser.add_argument("--disagg", default=None, help="P:D prefill and decode replicas")
    parser.add_argument("--no-skip", action="store_true", help="step every iteration")
    args = parser.parse_args()
    perf = RooflinePerfModel()
    pools: list[dict[str, object]] = [{"replicas": args.replicas}]
    if args.disagg is not None:
        num_prefill, num_decode = (int(n) for n in args.disagg.split(":"))
        pools = [
            {"name": "p", "role": "prefill", "replicas": num_prefill},
            {"name": "d", "role": "decode", "replicas": num_decode},
        ]
        args.replicas = num_prefill + num_decode
    cfg = DeploymentConfig.model_validate({"pools": pools, "router": {"kind": args.router}})
    deployment = build_deployment(cfg, "llama-3.1-8b", perf)
    workload = WorkloadConfig(
        preset="sharegpt-vidur",
        rate_per_s=args.rate_per_replica * args.replicas,
        num_requests=args.num_requests,
    ).build(RandomStreams(0))
    start, cpu_start = time.perf_counter(), time.process_time()
    run = run_cluster(workload, deployment, perf, skip_ahead=not args.no_skip)
    wall_s = time.perf_counter() - start
    # CPU time of this process: the one-core cost even when the machine is shared
    cpu_s = time.process_time() - cpu_start
    summary = summarize(run.records)
    print(f"replicas            {args.replicas} ({args.router})")
    print(f"requests            {summary.num_completed:,} completed of {summary.num_requests:,}")
    print(f"wall time           {wall_s:.1f} s")
    print(f"CPU time            {cpu_s:.2f} s")
    print(f"requests / wall s   {summary.num_requests / wall_s:,.0f}")
    print(f"simulated time      {run.records.end_s:,.0f} s")
    print(f"throughput          {summary.request_throughput_per_s:.1f} req/s")
    print(f"p99 TTFT            {summary.ttft.p99_s:.3f} s")
    if args.disagg is not None:
        # prefill replicas never skip: every skipped iteration is a decode one
        it = run.records.iterations.view()
        decode = [i for i, r in enumerate(run.records.replicas) if r.role == "decode"]
        num_decode_its = int(it["repeat"][np.isin(it["replica_id"], decode)].sum())
        skipped = run.records.counters.get("num_skipped_iterations", 0)
        print(f"decode its skipped  {skipped / num_decode_its:.1%} of {num_decode_its:,}")


if __name__ == "__main__":
    main()
