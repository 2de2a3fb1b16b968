"""Engine speed: simulated requests and output tokens per second of wall time.

ShareGPT-like lengths (the ``sharegpt`` preset) with Poisson arrivals on Llama-3.1-8B / H100
with the real roofline perf model, vLLM V0 scheduler (defaults), one replica.

    python bench/bench_engine.py                      # 10,000 requests near saturation
    python bench/bench_engine.py --requests 1000000   # bounded-memory check (prints peak RSS)
    python bench/bench_engine.py --no-skip            # without decode skip-ahead
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from servesim.core.rng import RandomStreams
from servesim.engine import ReplicaSetup, VLLMSchedulerConfig, run_simulation
from servesim.engine.config import SarathiSchedulerConfig
from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from servesim.workload.presets import get_preset
from servesim.workload.workload import SyntheticWorkload


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--rate", type=float, default=3.0, help="arrivals per second (3: near saturation)"
    )
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--gpu", default="h100-sxm")
    parser.add_argument("--scheduler", choices=["vllm", "sarathi"], default="vllm")
    parser.add_argument("--no-skip", action="store_true", help="disable decode skip-ahead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    preset = get_preset("sharegpt-vidur")
    workload = SyntheticWorkload(
        preset.arrivals(args.rate),
        preset.lengths,
        RandomStreams(args.seed),
        num_requests=args.requests,
    )
    plan = ReplicaPlan(model=resolve_model(args.model), gpu=get_gpu(args.gpu))
    scheduler = VLLMSchedulerConfig() if args.scheduler == "vllm" else SarathiSchedulerConfig()
    perf = RooflinePerfModel()
    start, cpu_start = time.perf_counter(), time.process_time()
    records = run_simulation(
        workload,
        [ReplicaSetup(plan=plan, scheduler=scheduler)],
        perf,
        skip_ahead=not args.no_skip,
    )
    wall_s = time.perf_counter() - start
    # CPU time of this process: the one-core cost even when the machine is shared
    cpu_s = time.process_time() - cpu_start
    req = records.requests.view()
    it = records.iterations.view()
    done = req["reject_reason"] == 0
    out_tokens = int(req["num_emitted_tokens"].sum())
    wait = (req["first_scheduled_s"] - req["arrival_s"])[done]
    ttft = (req["first_token_s"] - req["arrival_s"])[done]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"requests            {args.requests} ({int(done.sum())} completed)")
    print(f"simulated time      {records.end_s:.1f} s at {args.rate} req/s")
    print(f"wall time           {wall_s:.2f} s")
    print(f"CPU time            {cpu_s:.2f} s")
    print(f"requests per wall s {args.requests / wall_s:,.0f}")
    print(f"output tok per wall s {out_tokens / wall_s:,.0f}")
    print(f"iterations          {int(it['repeat'].sum())} in {len(it['repeat'])} rows")
    print(f"served throughput   {out_tokens / records.end_s:,.0f} output tok/s (simulated)")
    print(f"mean queue wait     {wait.mean():.3f} s, p50 TTFT {np.median(ttft):.3f} s")
    print(f"mean decode batch   {np.average(it['num_decode_seqs'], weights=it['repeat']):.1f}")
    print(f"preemptions         {records.counters.get('num_preemptions', 0)}")
    record_mib = (
        sum(a.nbytes for a in req.values())
        + sum(a.nbytes for a in it.values())
        + sum(a.nbytes for a in records.token_gaps.arrays())
    ) / 2**20
    print(f"records             {record_mib:.0f} MiB (columns, filled part)")
    print(f"peak RSS            {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
