"""Cluster simulation speed: 16 replicas of Llama-3.1-8B on H100, 100,000 ShareGPT requests.

Run: ``python bench/bench_cluster.py [--router NAME] [--num-requests N]``; prints wall time,
simulated requests per wall second and the run's throughput. Target: under 60 s on one core.
"""

from __future__ import annotations

import argparse
import time

from servesim.cluster import DeploymentConfig, build_deployment, run_cluster
from servesim.core.rng import RandomStreams
from servesim.metrics import summarize
from servesim.perf import RooflinePerfModel
from servesim.workload.config import WorkloadConfig


def main() -> None:
    """Time one 16-replica run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default="round_robin")
    parser.add_argument("--num-requests", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=16)
    # 2.5 req/s per replica: ~80% of one replica's long-run saturated rate on this workload
    # (3.0 req/s measured over 3,000 requests with the RooflinePerfModel)
    parser.add_argument("--rate-per-replica", type=float, default=2.5)
    args = parser.parse_args()
    perf = RooflinePerfModel()
    cfg = DeploymentConfig.model_validate(
        {"pools": [{"replicas": args.replicas}], "router": {"kind": args.router}}
    )
    deployment = build_deployment(cfg, "llama-3.1-8b", perf)
    workload = WorkloadConfig(
        preset="sharegpt-vidur",
        rate_per_s=args.rate_per_replica * args.replicas,
        num_requests=args.num_requests,
    ).build(RandomStreams(0))
    start, cpu_start = time.perf_counter(), time.process_time()
    run = run_cluster(workload, deployment, perf)
    wall_s = time.perf_counter() - start
    # CPU time of this process: the one-core cost even when the machine is shared
    cpu_s = time.process_time() - cpu_start
    summary = summarize(run.records)
    print(f"replicas            {args.replicas} ({args.router})")
    print(f"requests            {summary.num_completed:,} completed of {summary.num_requests:,}")
    print(f"wall time           {wall_s:.1f} s")
    print(f"CPU time            {cpu_s:.1f} s")
    print(f"requests / wall s   {summary.num_requests / wall_s:,.0f}")
    print(f"simulated time      {run.records.end_s:,.0f} s")
    print(f"throughput          {summary.request_throughput_per_s:.1f} req/s")
    print(f"p99 TTFT            {summary.ttft.p99_s:.3f} s")


if __name__ == "__main__":
    main()
